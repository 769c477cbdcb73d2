//! Big reads (topic pages, whole lists) on connections of their own, whose
//! replies are parsed here, straight into the text the caller builds.
//!
//! Why: redis-rs turns a reply into a tree of `Value`s. For a stream page
//! that is five values per event, about 1 µs to build and as much again to
//! free: more than Redis and the consumer's `JSON.parse` spend on the same
//! events together. The bytes of a RESP bulk string are the stored JSON text
//! already; they only need finding and copying.
//!
//! Only for a single Redis over TCP or a Unix socket (a Cluster routes by
//! slot; TLS would need a second TLS stack). Anything this reader does not
//! expect (an error reply, a foreign type, a refused connection) makes it
//! answer `None`, and the caller runs the same read through redis-rs, which
//! classifies the error. After a failed connect it stays off for a moment, so
//! a Redis that is down costs each call one failed attempt, not two.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::CacheError;

/// Idle connections kept for the next reads.
const MAX_IDLE: usize = 4;
/// How long the reader stays off after a connection attempt failed.
const OFF_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// Nesting a reply may have: a stream page is three deep.
const MAX_DEPTH: usize = 8;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = Box<dyn Io>;

pub(super) struct BulkReader {
    addr: ConnectionAddr,
    settings: RedisConnectionInfo,
    /// `host:port` for error messages.
    display_addr: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    idle: Mutex<Vec<Stream>>,
    off_until: Mutex<Option<Instant>>,
}

/// An array reply: its bytes, and where its elements start.
pub(super) struct RawArray {
    buf: Vec<u8>,
    starts: Vec<usize>,
}

impl RawArray {
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// A cursor at element `i`.
    pub(super) fn element(&self, i: usize) -> Cursor<'_> {
        Cursor {
            buf: &self.buf,
            at: self.starts[i],
        }
    }
}

/// Reads RESP values of a complete reply in order. Every method answers
/// `None` when the bytes are not what it reads.
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// `<kind><integer>\r\n`.
    fn header(&mut self, kind: u8) -> Option<i64> {
        if self.buf.get(self.at) != Some(&kind) {
            return None;
        }
        let eol = find_crlf(self.buf, self.at)?;
        let n = parse_int(&self.buf[self.at + 1..eol])?;
        self.at = eol + 2;
        Some(n)
    }

    /// An array's length.
    pub(super) fn array(&mut self) -> Option<usize> {
        usize::try_from(self.header(b'*')?).ok()
    }

    /// A bulk string's bytes (not nil).
    pub(super) fn bulk(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.header(b'$')?).ok()?;
        let end = self.at.checked_add(len)?;
        if self.buf.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        let bytes = &self.buf[self.at..end];
        self.at = end + 2;
        Some(bytes)
    }

    /// An XRANGE entry `[id, [field, value, ...]]`: the id and the value of
    /// `field` (`None` when the entry has no such field).
    pub(super) fn stream_entry(&mut self, field: &[u8]) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        if self.array()? != 2 {
            return None;
        }
        let id = self.bulk()?;
        let n = self.array()?;
        let mut found = None;
        for _ in 0..n / 2 {
            let (name, value) = (self.bulk()?, self.bulk()?);
            if found.is_none() && name == field {
                found = Some(value);
            }
        }
        if n % 2 == 1 {
            self.bulk()?;
        }
        Some((id, found))
    }
}

impl BulkReader {
    /// A reader for the server `info` names, or `None` when it cannot serve
    /// it (TLS, or an address kind it does not know).
    pub(super) fn new(info: &ConnectionInfo, connect_timeout: Duration, command_timeout: Duration) -> Option<Self> {
        let display_addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
            _ => return None,
        };
        Some(BulkReader {
            addr: info.addr().clone(),
            settings: info.redis_settings().clone(),
            display_addr,
            connect_timeout,
            command_timeout,
            idle: Mutex::default(),
            off_until: Mutex::default(),
        })
    }

    /// The reply to the command `args` when it is an array. `None`: the
    /// reader could not serve it (see the module's comment); run it through
    /// redis-rs. A reply that does not come within the command timeout is an
    /// error, as it would be there.
    pub(super) async fn array(&self, args: &[&[u8]]) -> Result<Option<RawArray>, CacheError> {
        if self.is_off() {
            return Ok(None);
        }
        let stream = match self.take_idle() {
            Some(stream) => stream,
            None => match tokio::time::timeout(self.connect_timeout, self.connect()).await {
                Ok(Some(stream)) => stream,
                Ok(None) => {
                    self.turn_off();
                    return Ok(None);
                }
                Err(_) => {
                    self.turn_off();
                    return Err(self.timeout(self.connect_timeout));
                }
            },
        };
        match tokio::time::timeout(self.command_timeout, request(stream, args)).await {
            // A connection that met anything unexpected is dropped: it may
            // hold the rest of a reply.
            Ok(Some((stream, reply))) => {
                self.put_idle(stream);
                Ok(Some(reply))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(self.timeout(self.command_timeout)),
        }
    }

    fn timeout(&self, timeout: Duration) -> CacheError {
        CacheError::Timeout {
            addr: self.display_addr.clone(),
            timeout,
            sent: true,
        }
    }

    async fn connect(&self) -> Option<Stream> {
        let mut stream: Stream = match &self.addr {
            ConnectionAddr::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await.ok()?;
                tcp.set_nodelay(true).ok()?;
                Box::new(tcp)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await.ok()?),
            _ => return None,
        };
        let mut handshake = Vec::new();
        if let Some(password) = self.settings.password() {
            match self.settings.username() {
                Some(user) => encode(&mut handshake, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => encode(&mut handshake, &[b"AUTH", password.as_bytes()]),
            }
        }
        if self.settings.db() != 0 {
            encode(&mut handshake, &[b"SELECT", self.settings.db().to_string().as_bytes()]);
        }
        if handshake.is_empty() {
            return Some(stream);
        }
        let replies = 1 + usize::from(self.settings.password().is_some() && self.settings.db() != 0);
        stream.write_all(&handshake).await.ok()?;
        let mut buf = Vec::new();
        for _ in 0..replies {
            // "+OK\r\n"; anything else (a refused AUTH) turns the reader off,
            // and redis-rs reports the error.
            while find_crlf(&buf, 0).is_none() {
                read_more(&mut stream, &mut buf).await?;
            }
            let eol = find_crlf(&buf, 0)?;
            if &buf[..eol] != b"+OK" {
                return None;
            }
            buf.drain(..eol + 2);
        }
        buf.is_empty().then_some(stream)
    }

    fn is_off(&self) -> bool {
        let mut off = self.off_until.lock().unwrap_or_else(|p| p.into_inner());
        match *off {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *off = None;
                false
            }
            None => false,
        }
    }

    fn turn_off(&self) {
        *self.off_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + OFF_AFTER_FAILURE);
    }

    fn take_idle(&self) -> Option<Stream> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_idle(&self, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(stream);
        }
    }

    /// Closes the idle connections; later reads open new ones.
    pub(super) fn close(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Sends `args` and reads the reply: the stream back (usable again) and the
/// reply, when it is an array (maybe empty). `None`: any other reply, or a
/// failure (the stream is dropped).
async fn request(mut stream: Stream, args: &[&[u8]]) -> Option<(Stream, RawArray)> {
    let mut command = Vec::new();
    encode(&mut command, args);
    stream.write_all(&command).await.ok()?;
    let mut buf = Vec::with_capacity(64 * 1024);
    while find_crlf(&buf, 0).is_none() {
        read_more(&mut stream, &mut buf).await?;
    }
    let mut top = Cursor { buf: &buf, at: 0 };
    let Some(count) = top.array() else {
        // An error reply or another type: redis-rs reads it again and
        // reports it. (A nil array is "*-1", which `array()` refuses too.)
        return None;
    };
    let mut at = top.at;
    let mut starts = Vec::with_capacity(count);
    // Element by element, resuming after the last complete one when more
    // bytes arrive, so a big reply is scanned once.
    while starts.len() < count {
        match value_end(&buf, at, 0) {
            Scan::Complete(end) => {
                starts.push(at);
                at = end;
            }
            Scan::Incomplete => read_more(&mut stream, &mut buf).await?,
            Scan::Malformed => return None,
        }
    }
    if at != buf.len() {
        return None; // bytes after the reply: the connection is out of step
    }
    Some((stream, RawArray { buf, starts }))
}

async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> Option<()> {
    buf.reserve(64 * 1024);
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(()),
    }
}

/// Appends `args` as a RESP command to `out`.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

enum Scan {
    Complete(usize),
    Incomplete,
    Malformed,
}

/// Where the RESP2 value starting at `at` ends.
fn value_end(buf: &[u8], at: usize, depth: usize) -> Scan {
    let Some(&kind) = buf.get(at) else {
        return Scan::Incomplete;
    };
    let Some(eol) = find_crlf(buf, at) else {
        return Scan::Incomplete;
    };
    let after_line = eol + 2;
    match kind {
        b'+' | b'-' | b':' => Scan::Complete(after_line),
        b'$' | b'*' => {
            let Some(n) = parse_int(&buf[at + 1..eol]) else {
                return Scan::Malformed;
            };
            if n < 0 {
                return Scan::Complete(after_line); // nil
            }
            if kind == b'$' {
                let end = after_line + n as usize + 2;
                return if end > buf.len() {
                    Scan::Incomplete
                } else if &buf[end - 2..end] == b"\r\n" {
                    Scan::Complete(end)
                } else {
                    Scan::Malformed
                };
            }
            if depth >= MAX_DEPTH {
                return Scan::Malformed;
            }
            let mut end = after_line;
            for _ in 0..n {
                match value_end(buf, end, depth + 1) {
                    Scan::Complete(next) => end = next,
                    other => return other,
                }
            }
            Scan::Complete(end)
        }
        _ => Scan::Malformed,
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.windows(2).position(|pair| pair == b"\r\n").map(|i| from + i)
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, args);
        out
    }

    #[test]
    fn scans_nested_values_and_knows_when_bytes_are_missing() {
        let entry = b"*2\r\n$3\r\n0-1\r\n*2\r\n$1\r\ne\r\n$2\r\n{}\r\n";
        assert!(matches!(value_end(entry, 0, 0), Scan::Complete(n) if n == entry.len()));
        for cut in 0..entry.len() {
            assert!(
                matches!(value_end(&entry[..cut], 0, 0), Scan::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(matches!(value_end(b"$3\r\nabcd\r\n", 0, 0), Scan::Malformed));
        assert!(matches!(value_end(b"?x\r\n", 0, 0), Scan::Malformed));
        assert!(matches!(value_end(b"$-1\r\n", 0, 0), Scan::Complete(5)));
    }

    #[test]
    fn too_deep_a_reply_is_malformed() {
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(matches!(value_end(deep.as_bytes(), 0, 0), Scan::Malformed));
    }

    #[test]
    fn reads_a_stream_entry_whatever_its_fields() {
        let entry = b"*2\r\n$3\r\n0-7\r\n*4\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ne\r\n$7\r\n{\"a\":1}\r\n";
        let mut cursor = Cursor { buf: entry, at: 0 };
        assert_eq!(cursor.stream_entry(b"e"), Some((&b"0-7"[..], Some(&b"{\"a\":1}"[..]))));
        let mut cursor = Cursor { buf: entry, at: 0 };
        assert_eq!(cursor.stream_entry(b"z"), Some((&b"0-7"[..], None)));
        let mut cursor = Cursor { buf: b":1\r\n", at: 0 };
        assert_eq!(cursor.stream_entry(b"e"), None);
    }

    // Against the real server of `REDIS_URL` (else 127.0.0.1:6379).

    fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    fn reader_for(url: &str) -> BulkReader {
        let info = redis::IntoConnectionInfo::into_connection_info(url).unwrap();
        BulkReader::new(&info, Duration::from_secs(2), Duration::from_secs(5)).expect("a TCP address")
    }

    /// Runs a command for a test's setup or teardown, which must succeed.
    async fn command<T: redis::FromRedisValue>(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> T {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(conn).await.unwrap()
    }

    async fn admin() -> redis::aio::MultiplexedConnection {
        redis::Client::open(url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    fn unique(what: &str) -> String {
        let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos();
        format!("bulk-reader-test:{what}:{}:{nanos}", std::process::id())
    }

    #[tokio::test]
    async fn a_reply_of_many_reads_equals_what_redis_rs_reads() {
        let mut conn = admin().await;
        let key = unique("stream");
        // 3,000 entries of 1 KB: a reply of several MB, arriving in many reads.
        let body = format!("{{\"text\":\"{}\"}}", "x".repeat(1000));
        let mut pipe = redis::pipe();
        for _ in 0..3000 {
            pipe.cmd("XADD").arg(&key).arg("0-*").arg("e").arg(&body).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
        let reader = reader_for(&url());
        let reply = reader
            .array(&[b"XRANGE", key.as_bytes(), b"-", b"+"])
            .await
            .unwrap()
            .expect("served");
        let expected: Vec<(String, Vec<(String, String)>)> =
            command(&mut conn, &["XRANGE", key.as_str(), "-", "+"]).await;
        assert_eq!(reply.len(), 3000);
        for (i, (id, fields)) in expected.iter().enumerate() {
            let (got_id, got_body) = reply.element(i).stream_entry(b"e").unwrap();
            assert_eq!(got_id, id.as_bytes());
            assert_eq!(got_body, Some(fields[0].1.as_bytes()));
        }
        // The connection went back to the pool and serves the next read.
        assert_eq!(reader.idle.lock().unwrap().len(), 1);
        let empty = reader
            .array(&[b"LRANGE", unique("none").as_bytes(), b"0", b"-1"])
            .await
            .unwrap();
        assert_eq!(empty.map(|r| r.len()), Some(0));
        let _: () = command(&mut conn, &["DEL", key.as_str()]).await;
    }

    #[tokio::test]
    async fn an_error_reply_is_left_to_redis_rs_and_its_connection_dropped() {
        let mut conn = admin().await;
        let key = unique("string");
        let _: () = command(&mut conn, &["SET", key.as_str(), "v"]).await;
        let reader = reader_for(&url());
        // WRONGTYPE: not served, so the caller reads through redis-rs and gets its error.
        assert!(reader
            .array(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])
            .await
            .unwrap()
            .is_none());
        assert!(reader.idle.lock().unwrap().is_empty());
        assert!(!reader.is_off(), "a reply error is not a connection failure");
        let _: () = command(&mut conn, &["DEL", key.as_str()]).await;
    }

    #[tokio::test]
    async fn authenticates_as_the_urls_user_and_selects_its_database() {
        let mut conn = admin().await;
        let user = unique("user").replace(':', "-");
        let key = unique("list");
        let _: () = command(
            &mut conn,
            &[
                "ACL",
                "SETUSER",
                user.as_str(),
                "on",
                ">s3cret",
                "~bulk-reader-test:*",
                "+@all",
            ],
        )
        .await;
        let mut db3 = redis::Client::open(format!("{}/3", url()))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = command(&mut db3, &["RPUSH", key.as_str(), "in-db-3"]).await;
        let base = url();
        let authed = base.replacen("redis://", &format!("redis://{user}:s3cret@"), 1);
        let reader = reader_for(&format!("{authed}/3"));
        let reply = reader
            .array(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])
            .await
            .unwrap()
            .expect("served");
        assert_eq!(reply.element(0).bulk(), Some(&b"in-db-3"[..]));
        // A wrong password is not served, and the reader rests before trying again.
        let refused = reader_for(&format!(
            "{}/3",
            base.replacen("redis://", &format!("redis://{user}:wrong@"), 1)
        ));
        assert!(refused
            .array(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])
            .await
            .unwrap()
            .is_none());
        assert!(refused.is_off());
        let _: () = command(&mut db3, &["DEL", key.as_str()]).await;
        let _: () = command(&mut conn, &["ACL", "DELUSER", user.as_str()]).await;
    }

    #[tokio::test]
    async fn a_server_that_refuses_connections_is_left_to_redis_rs_at_once() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let reader = reader_for(&format!("redis://127.0.0.1:{port}"));
        let started = Instant::now();
        assert!(reader.array(&[b"LRANGE", b"k", b"0", b"-1"]).await.unwrap().is_none());
        assert!(reader.is_off());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "did not wait out the connect timeout"
        );
    }

    #[test]
    fn encodes_binary_arguments_with_their_length() {
        assert_eq!(
            resp(&[b"GET", b"a\r\nb"]),
            b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n".to_vec()
        );
    }
}
