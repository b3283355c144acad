//! Every call into PHP's C API that ext-php-rs does not wrap, so the crate's `unsafe` is this one
//! short file (the C binding's `ffi.rs` model); the rest of the crate denies `unsafe_code`.
//!
//! Rules: each function here is safe to call from PHP's thread during MINIT or a request, which is
//! the only place the entry points run; pointers PHP returns are checked for NULL before they are
//! read, and nothing borrowed from PHP outlives the call.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::types::ZendHashTable;
use ext_php_rs::zend::IniEntryDef;

extern "C" {
    /// `main/php_ini.h`: the values of php.ini and `-d`, by name, including names no extension
    /// registered.
    fn php_ini_get_configuration_hash() -> *mut ZendHashTable;
    /// `INI_STR()` (`Zend/zend_ini.h`): the current value of a registered directive.
    fn zend_ini_string_ex(
        name: *const c_char,
        name_length: usize,
        orig: c_int,
        exists: *mut bool,
    ) -> *mut c_char;
}

/// Registers `names` as `PHP_INI_SYSTEM` directives without a default value: their value is a
/// NULL string, which no php.ini line, `-d` or `php_admin_value` can produce, so [`ini_value`]
/// tells "not set" from "set to an empty value".
pub(crate) fn register_directives<'a>(names: impl Iterator<Item = &'a str>, module_number: i32) {
    let entries = names
        .map(|name| {
            let mut entry =
                IniEntryDef::new(name.to_string(), String::new(), &IniEntryPermission::System);
            if !entry.value.is_null() {
                // SAFETY: IniEntryDef::new made `value` with CString::into_raw; reclaimed once.
                drop(unsafe { CString::from_raw(entry.value.cast_mut()) });
            }
            entry.value = std::ptr::null();
            entry.value_length = 0;
            entry
        })
        .collect();
    IniEntryDef::register(entries, module_number);
}

/// The names given in php.ini or with `-d` (PHP's configuration hash), whether or not an extension
/// registered them.
pub(crate) fn configured_names() -> Vec<String> {
    // SAFETY: PHP's own configuration hash, built before MINIT and read-only afterwards; read on
    // PHP's thread. NULL (no configuration) is checked.
    let Some(hash) = (unsafe { php_ini_get_configuration_hash().as_ref() }) else {
        return Vec::new();
    };
    hash.iter().map(|(key, _)| key.to_string()).collect()
}

/// The current value of a registered directive (`INI_STR`): `None` when it is set nowhere (its
/// value is still the NULL default of [`register_directives`]), `Some("")` when set to an empty
/// value. Non-UTF-8 bytes are replaced, so a bad value reaches the config rules (and their error
/// message) instead of failing here.
pub(crate) fn ini_value(name: &str) -> Option<String> {
    let mut exists = false;
    // SAFETY: name points to name.len() valid bytes (zend_ini_string_ex takes the length, no NUL
    // needed); `exists` is a valid out-pointer. Called on PHP's thread.
    let ptr = unsafe { zend_ini_string_ex(name.as_ptr().cast(), name.len(), 0, &mut exists) };
    if ptr.is_null() || !exists {
        return None;
    }
    // SAFETY: PHP returns the directive's NUL-terminated value, alive for the whole request; it is
    // copied before returning.
    let value = unsafe { CStr::from_ptr(ptr) };
    Some(value.to_string_lossy().into_owned())
}
