//! Every conversion between C pointers and Rust values lives here, so the unsafe surface is one
//! short file. Rules, as in rustls-ffi:
//! - a handle is a `Box<evlog_handle>` turned into a raw pointer by [`into_raw`] and back only by
//!   [`take`] (in `evlog_close`); everything else borrows it with [`borrow`];
//! - NULL is checked before any dereference and reported as `EVLOG_NULL_ARGUMENT`;
//! - strings are checked for UTF-8 and borrowed, never copied;
//! - outputs are written only on success, through [`write_out`].
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};

use crate::error::{self, evlog_status};
use crate::evlog_handle;

/// A NULL-checked argument, or the status to return.
pub(crate) type Arg<T> = Result<T, evlog_status>;

/// Boxes a handle for C.
pub(crate) fn into_raw(h: evlog_handle) -> *mut evlog_handle {
    Box::into_raw(Box::new(h))
}

/// Borrows a handle.
pub(crate) fn borrow<'a>(h: *const evlog_handle, function: &str) -> Arg<&'a evlog_handle> {
    // SAFETY: the C contract: `h` is NULL or a pointer returned by `evlog_open` and not yet passed
    // to `evlog_close`. NULL is checked; `evlog_handle` is Sync, so shared borrows from many
    // threads are fine.
    unsafe { h.as_ref() }.ok_or_else(|| error::null_argument(function, "handle"))
}

/// Takes ownership of a handle back from C (only `evlog_close`).
pub(crate) fn take(h: *mut evlog_handle) -> Arg<Box<evlog_handle>> {
    if h.is_null() {
        return Err(error::null_argument("evlog_close", "handle"));
    }
    // SAFETY: non-NULL and, by the C contract, from `into_raw` and not closed before; after this
    // call C no longer owns it.
    Ok(unsafe { Box::from_raw(h) })
}

/// Borrows a NUL-terminated UTF-8 string argument.
pub(crate) fn c_str<'a>(p: *const c_char, function: &str, argument: &str) -> Arg<&'a str> {
    if p.is_null() {
        return Err(error::null_argument(function, argument));
    }
    // SAFETY: non-NULL and, by the C contract, a NUL-terminated string valid for this call.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (the common case: namespace and type names).
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    utf8(bytes, function, argument)
}

/// Borrows an optional NUL-terminated UTF-8 string argument (NULL = absent).
pub(crate) fn opt_c_str<'a>(
    p: *const c_char,
    function: &str,
    argument: &str,
) -> Arg<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    c_str(p, function, argument).map(Some)
}

/// Borrows `len` bytes of UTF-8 text at `p` (not NUL-terminated).
pub(crate) fn str_len<'a>(
    p: *const c_char,
    len: usize,
    function: &str,
    argument: &str,
) -> Arg<&'a str> {
    if p.is_null() {
        return Err(error::null_argument(function, argument));
    }
    // SAFETY: non-NULL and, by the C contract, `len` readable bytes valid for this call.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    utf8(bytes, function, argument)
}

fn utf8<'a>(bytes: &'a [u8], function: &str, argument: &str) -> Arg<&'a str> {
    // SIMD validation (~10× fewer instructions than std on a 200-byte event); on failure std
    // re-checks to say where the bad byte is.
    if let Ok(s) = simdutf8::basic::from_utf8(bytes) {
        return Ok(s);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        error::fail(
            evlog_status::EVLOG_INVALID_UTF8,
            format_args!("{function}: argument `{argument}` is not valid UTF-8 ({e})"),
        )
    })
}

/// Checks that an output pointer is not NULL (before doing the work).
pub(crate) fn out_ptr<T>(p: *mut T, function: &str, argument: &str) -> Arg<*mut T> {
    if p.is_null() {
        Err(error::null_argument(function, argument))
    } else {
        Ok(p)
    }
}

/// Writes an output (only on success). `p` was checked by [`out_ptr`].
pub(crate) fn write_out<T>(p: *mut T, value: T) {
    // SAFETY: `p` is non-NULL (checked by `out_ptr`) and, by the C contract, points to writable
    // memory for a `T`; `write` does not read or drop the old (possibly uninitialised) value.
    unsafe { p.write(value) }
}

/// Copies `text` into the caller's buffer as a NUL-terminated string, cut at a UTF-8 character
/// boundary to fit. Returns the bytes written (without the NUL). Does nothing when `buf` is NULL
/// or `len` is 0.
pub(crate) fn copy_to_buf(text: &str, buf: *mut c_char, len: usize) -> usize {
    if buf.is_null() || len == 0 {
        return 0;
    }
    let mut n = text.len().min(len - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` is non-NULL and, by the C contract, `len` writable bytes; we write `n + 1 <=
    // len` bytes, and `text` (Rust memory) cannot overlap the caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        buf.add(n).write(0);
    }
    n
}
