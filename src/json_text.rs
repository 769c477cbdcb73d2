//! `JsonText`: JSON text handed to JS as a string, the fast way.

use napi::bindgen_prelude::{Latin1String, ToNapiValue, TypeName, ValueType};
use napi::sys;

/// JSON text for JS. Why not a plain `String`: napi creates a JS string from
/// UTF-8 by decoding it (~1 GB/s here, a fifth of a replayed event's cost in
/// JS). JSON text is nearly always ASCII, which V8 takes as Latin-1 with a
/// plain copy; the ASCII check runs at memory speed. Other text goes as UTF-8.
pub struct JsonText(pub String);

impl ToNapiValue for JsonText {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        if val.0.is_ascii() {
            // ASCII is the same bytes in Latin-1.
            unsafe { Latin1String::to_napi_value(env, Latin1String::from(val.0)) }
        } else {
            unsafe { String::to_napi_value(env, val.0) }
        }
    }
}

impl TypeName for JsonText {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}
