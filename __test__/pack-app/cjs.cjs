// The scratch app's CommonJS script: `require('durable-agent')`, as an app
// written in CommonJS loads it, every export used by exercise.cjs.
const exercise = require('./exercise.cjs')

const namespace = require('durable-agent')
exercise(namespace, { namespace, entry: require.resolve('durable-agent') }).then(
  (report) => console.log(JSON.stringify(report)),
  (error) => {
    console.error(error)
    process.exitCode = 1
  },
)
