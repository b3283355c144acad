//! Every call into PHP's C API that ext-php-rs does not wrap, so the crate's `unsafe` is in this
//! one file (the C binding's `ffi.rs` model); the rest of the crate denies `unsafe_code`.
//!
//! Rules: each function here is safe to call from PHP's thread during MINIT or a request, which is
//! the only place the entry points run; pointers PHP returns are checked for NULL before they are
//! read, and nothing borrowed from PHP outlives the call.
//!
//! It also reads PHP's values in place, for `evlog_log()`'s hot path: the call's arguments
//! ([`call_args`]), a zval's type and value ([`value`]), a hash table's slots ([`Table`], PHP >=
//! 8.2's `zend_array` layout: the bindings ext-php-rs generates for older PHP have no
//! `arPacked`, so this does not compile there) and the valid-UTF-8 flag of a string
//! ([`flagged_utf8`]). ext-php-rs's iterator costs four out-of-line `zend_hash_*_ex` calls per
//! element; this is a loop over an array.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use ext_php_rs::ffi::{zend_array_destroy, zend_wrong_parameters_count_error, Bucket};
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::types::{ZendHashTable, ZendObject, ZendStr, Zval};
use ext_php_rs::zend::{ExecuteData, IniEntryDef};

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

/// The arguments of the internal-function call `ex` is the frame of.
pub(crate) fn call_args(ex: &ExecuteData) -> &[Zval] {
    // SAFETY: an internal function's frame holds the call's `num_args` (`u2` of `This`)
    // arguments as consecutive zvals from `ZEND_CALL_ARG(ex, 1)` on (`Zend/zend_compile.h`),
    // alive for the call; the pointer arithmetic is ext-php-rs's `ZEND_CALL_ARG`.
    unsafe {
        let n = ex.This.u2.num_args as usize;
        match ex.zend_call_arg(0) {
            Some(first) if n > 0 => {
                std::slice::from_raw_parts(ptr::from_mut(first).cast_const(), n)
            }
            _ => &[],
        }
    }
}

/// Throws PHP's `ArgumentCountError` for the running internal function, as
/// `ZEND_PARSE_PARAMETERS_START` does.
pub(crate) fn wrong_parameter_count(min: u32, max: u32) {
    // SAFETY: called from an internal function's handler, on PHP's thread.
    unsafe { zend_wrong_parameters_count_error(min, max) }
}

/// Sets an internal function's return value to a bool. PHP hands the handler a return value
/// set to null (`ZVAL_NULL` before the call, `Zend/zend_vm_def.h`, `zend_call_function`), so
/// when it holds nothing counted the type word is all there is to write; otherwise ext-php-rs's
/// `set_bool` releases what it holds first (its checks cost ~60 instructions per call).
#[inline]
pub(crate) fn set_bool(retval: &mut Zval, value: bool) {
    // SAFETY: `u1.v.type_` and `u1.type_info` share the zval's type word; a type below
    // IS_STRING holds nothing to release, and writing IS_TRUE/IS_FALSE there (type flags 0)
    // makes a valid bool zval whatever the value union holds.
    unsafe {
        if retval.u1.v.type_ < IS_STRING {
            retval.u1.type_info = u32::from(if value { IS_TRUE } else { IS_FALSE });
            return;
        }
    }
    retval.set_bool(value);
}

/// A string's text, or `None` when it is not UTF-8: unchecked when PHP flagged it valid, one
/// ASCII test for the usual ASCII names, else `from_utf8`.
pub(crate) fn zend_str_text(s: &ZendStr) -> Option<&str> {
    if let Some(valid) = flagged_utf8(s) {
        return Some(valid);
    }
    let bytes = s.as_bytes();
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

// `Zend/zend_types.h`, `Zend/zend_hash.h` (PHP 8.2; unchanged since 7.3 except `arPacked`).
const IS_UNDEF: u8 = 0;
const IS_NULL: u8 = 1;
const IS_FALSE: u8 = 2;
const IS_TRUE: u8 = 3;
const IS_LONG: u8 = 4;
const IS_DOUBLE: u8 = 5;
const IS_STRING: u8 = 6;
const IS_ARRAY: u8 = 7;
const IS_OBJECT: u8 = 8;
const IS_RESOURCE: u8 = 9;
const IS_REFERENCE: u8 = 10;
const IS_INDIRECT: u8 = 12;
/// `GC_IMMUTABLE`: in shared or read-only memory; its refcount must not be written.
const GC_IMMUTABLE: u32 = 1 << 6;
/// `IS_STR_VALID_UTF8` (a `GC_FLAGS` bit of `zend_string`).
const IS_STR_VALID_UTF8: u32 = 1 << 9;
/// `HASH_FLAG_PACKED`: slots are bare zvals (`arPacked`), keys their positions.
const HASH_FLAG_PACKED: u32 = 1 << 2;

/// A zval's type and value, read in place.
#[derive(Debug)]
pub(crate) enum Value<'a> {
    /// `IS_UNDEF`.
    Undef,
    Null,
    False,
    True,
    Long(i64),
    Double(f64),
    Str(&'a ZendStr),
    /// Held for as long as the [`Table`] lives.
    Array(Table<'a>),
    Object(&'a ZendObject),
    Resource,
    /// A PHP reference (`&$x`): the referenced zval.
    Reference(&'a Zval),
    /// `IS_INDIRECT` (property and symbol tables): the zval it points to.
    Indirect(&'a Zval),
    /// Anything else (internal types that do not occur in user arrays).
    Other,
}

/// Reads `z` in place (ext-php-rs's accessors decode the type once per accessor call).
#[inline]
pub(crate) fn value(z: &Zval) -> Value<'_> {
    // SAFETY: a zval's type tag (`u1.v.type_`) says which member of its value union is set
    // (`Zend/zend_types.h`); for strings, arrays, objects, references and indirect zvals that
    // member is a non-NULL pointer to something alive while the zval holds it, i.e. at least
    // for the borrow of `z` (the tables `z` lives in are held, see `Table`).
    unsafe {
        match z.u1.v.type_ {
            IS_UNDEF => Value::Undef,
            IS_NULL => Value::Null,
            IS_FALSE => Value::False,
            IS_TRUE => Value::True,
            IS_LONG => Value::Long(z.value.lval),
            IS_DOUBLE => Value::Double(z.value.dval),
            IS_STRING => Value::Str(&*z.value.str_),
            IS_ARRAY => Value::Array(Table::hold(NonNull::new_unchecked(z.value.arr))),
            IS_OBJECT => Value::Object(&*z.value.obj),
            IS_RESOURCE => Value::Resource,
            IS_REFERENCE => Value::Reference(&(*z.value.ref_).val),
            IS_INDIRECT => Value::Indirect(&*z.value.zv),
            _ => Value::Other,
        }
    }
}

/// The string as `&str` when PHP has flagged it valid UTF-8 (`IS_STR_VALID_UTF8`), so it need
/// not be checked again.
#[inline]
pub(crate) fn flagged_utf8(s: &ZendStr) -> Option<&str> {
    // SAFETY: `gc.u` has one member, the header word every zend_string has.
    let flags = unsafe { s.gc.u.type_info };
    if flags & IS_STR_VALID_UTF8 == 0 {
        return None;
    }
    // SAFETY: PHP sets the flag only on a string it has checked is UTF-8 (PCRE with /u, PHP >=
    // 7.3) and clears it whenever the bytes change (`zend_string_forget_hash_val`); PHP's own
    // PCRE functions skip their check on it the same way.
    Some(unsafe { std::str::from_utf8_unchecked(s.as_bytes()) })
}

/// A PHP array being read, kept alive and unchanged while this lives.
///
/// User code can run while a table is walked (`jsonSerialize()`, `__toString()` of a value in
/// it) and could drop or change the array. So a table read from a zval or an object holds a
/// reference (its refcount + 1, PHP's `GC_TRY_ADDREF`): PHP never frees it then, and separates
/// it (copy on write) before any change, so its slots stay where they are. Immutable arrays
/// (`GC_IMMUTABLE`: literals, opcache) never change and are not counted.
#[derive(Debug)]
pub(crate) struct Table<'a> {
    ht: NonNull<ZendHashTable>,
    held: bool,
    _borrow: PhantomData<&'a ZendHashTable>,
}

/// A key of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Index(i64),
    Str(&'a ZendStr),
}

impl<'a> Table<'a> {
    /// The array an entry point received as an argument. Not held: the call frame holds it for
    /// the call, and it is shared with the caller's variable (or unreachable from user code), so
    /// PHP separates it before any change.
    pub(crate) fn argument(ht: &'a ZendHashTable) -> Self {
        Self {
            ht: NonNull::from(ht),
            held: false,
            _borrow: PhantomData,
        }
    }

    fn hold(ht: NonNull<ZendHashTable>) -> Self {
        // SAFETY: `ht` is a live array (from a zval or an object's handler, on PHP's thread);
        // its refcount is PHP's shared counter, written here as `GC_TRY_ADDREF` does.
        let held = unsafe {
            let gc = &mut (*ht.as_ptr()).gc;
            let counted = gc.u.type_info & GC_IMMUTABLE == 0;
            if counted {
                gc.refcount += 1;
            }
            counted
        };
        Self {
            ht,
            held,
            _borrow: PhantomData,
        }
    }

    /// The property table of an object (its `get_properties` handler), held.
    pub(crate) fn properties(obj: &'a ZendObject) -> Option<Self> {
        // SAFETY: every object has a handler table; `get_properties` is called on PHP's thread
        // with the object it belongs to and returns its property table (built if needed) or NULL.
        let ht = unsafe {
            let get = (*obj.handlers).get_properties?;
            get(ptr::from_ref(obj).cast_mut())
        };
        NonNull::new(ht).map(Self::hold)
    }

    fn raw(&self) -> &ZendHashTable {
        // SAFETY: alive while `self` lives (held, or an argument borrowed for `'a`).
        unsafe { self.ht.as_ref() }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.raw().nNumOfElements as usize
    }

    /// The elements in order (PHP's `foreach` order).
    pub(crate) fn entries(&self) -> Entries<'_> {
        let ht = self.raw();
        let used = ht.nNumUsed as usize;
        // SAFETY: PHP 8.2's `zend_array`: the `HASH_FLAG_PACKED` flag of `u.flags` says whether
        // `arPacked` points to `nNumUsed` zvals or `arData` to `nNumUsed` Buckets; every slot
        // below `nNumUsed` is in use or IS_UNDEF (deleted), none above is read. With no slot
        // used the pointer may be a shared placeholder and is not read. The slots stay where
        // they are while `self` lives (see the type's docs).
        unsafe {
            if used == 0 {
                Entries::Hash([].iter())
            } else if packed(ht) {
                let slots = std::slice::from_raw_parts(ht.__bindgen_anon_1.arPacked, used);
                Entries::Packed(slots.iter().enumerate())
            } else {
                let buckets = std::slice::from_raw_parts(ht.__bindgen_anon_1.arData, used);
                Entries::Hash(buckets.iter())
            }
        }
    }

    /// Whether the keys are `0..len` in order (`array_is_list()`).
    pub(crate) fn is_list(&self) -> bool {
        let ht = self.raw();
        if packed(ht) && ht.nNumUsed == ht.nNumOfElements {
            return true; // packed without holes
        }
        let mut next = 0;
        for (key, _) in self.entries() {
            match key {
                Key::Index(i) if i == next => next += 1,
                _ => return false,
            }
        }
        true
    }
}

impl Drop for Table<'_> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // SAFETY: gives back the reference `hold` took (PHP's `GC_DELREF`); when user code
        // dropped every other one meanwhile, the array is freed here, as `zval_ptr_dtor` would.
        unsafe {
            let ht = self.ht.as_ptr();
            (*ht).gc.refcount -= 1;
            if (*ht).gc.refcount == 0 {
                zend_array_destroy(ht);
            }
        }
    }
}

/// The elements of a [`Table`]: IS_UNDEF slots (deleted elements) are skipped.
pub(crate) enum Entries<'t> {
    Packed(std::iter::Enumerate<std::slice::Iter<'t, Zval>>),
    Hash(std::slice::Iter<'t, Bucket>),
}

impl<'t> Iterator for Entries<'t> {
    type Item = (Key<'t>, &'t Zval);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Entries::Packed(slots) => loop {
                let (i, z) = slots.next()?;
                // SAFETY: `u1.v` is the tag view of the type word every zval has.
                if unsafe { z.u1.v.type_ } != IS_UNDEF {
                    return Some((Key::Index(i as i64), z));
                }
            },
            Entries::Hash(buckets) => loop {
                let b = buckets.next()?;
                // SAFETY: as above; a used bucket's key is NULL (an integer key, in `h`) or a
                // string the table owns.
                unsafe {
                    if b.val.u1.v.type_ != IS_UNDEF {
                        let key = match b.key.as_ref() {
                            Some(s) => Key::Str(s),
                            None => Key::Index(b.h as i64),
                        };
                        return Some((key, &b.val));
                    }
                }
            },
        }
    }
}

fn packed(ht: &ZendHashTable) -> bool {
    // SAFETY: `u.flags` is the whole-word view of the table's flag bytes.
    unsafe { ht.u.flags & HASH_FLAG_PACKED != 0 }
}
