//! The data directory's permissions on Windows: SYSTEM and Administrators only, nothing
//! inherited from ProgramData (whose "Users: read" would let a pupil read the agent's key and
//! spool). The installer's setup step applies it before the key is made; files made inside
//! inherit it.
#![allow(unsafe_code)] // Win32 calls; each block states why it is sound.

use std::ffi::OsStr;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetFileSecurityW, SetFileSecurityW, DACL_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
};

/// Full control for SYSTEM (SY) and Administrators (BA), for the directory and everything in
/// it (OICI); P: protected, nothing inherited.
pub const LOCKED_SDDL: &str = "D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// Applies [`LOCKED_SDDL`] to `dir`, creating it first.
pub fn lock(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let sddl = wide(OsStr::new(LOCKED_SDDL));
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; on success `descriptor` points to memory from
    // LocalAlloc, freed below.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let path = wide(dir.as_os_str());
    // SAFETY: `path` is NUL-terminated and `descriptor` a valid self-relative descriptor.
    let set = unsafe {
        SetFileSecurityW(
            path.as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            descriptor,
        )
    };
    let result = if set == 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: the descriptor came from LocalAlloc in the conversion above, freed once.
    unsafe { LocalFree(descriptor) };
    result
}

/// The directory's access list in SDDL (what `icacls` shows on Windows).
pub fn describe(dir: &Path) -> std::io::Result<String> {
    let path = wide(dir.as_os_str());
    let mut needed = 0u32;
    // SAFETY: a null buffer of length 0 asks for the size needed.
    unsafe {
        GetFileSecurityW(
            path.as_ptr(),
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    if needed == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buffer = vec![0u8; needed as usize];
    // SAFETY: the buffer holds `needed` bytes, as the call was told.
    let ok = unsafe {
        GetFileSecurityW(
            path.as_ptr(),
            DACL_SECURITY_INFORMATION,
            buffer.as_mut_ptr().cast(),
            needed,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: the buffer holds the descriptor just read; on success `text` is a LocalAlloc'd
    // NUL-terminated string of `len` characters, freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            buffer.as_mut_ptr().cast(),
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            &mut len,
        )
    };
    if ok == 0 || text.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `text` holds `len` UTF-16 units (the count may include the terminator).
    let sddl = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len as usize) });
    // SAFETY: the string came from LocalAlloc in the conversion above, freed once.
    unsafe { LocalFree(text.cast()) };
    Ok(sddl.trim_end_matches('\0').to_owned())
}
