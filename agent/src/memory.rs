//! Keeping the agent's resident memory small. Compiling a rule pack builds
//! large temporary automata; the allocator keeps the freed pages unless
//! asked to give them back, so the agent does that after each compile.

/// Returns freed heap memory to the operating system, where the platform's
/// allocator supports it (glibc); elsewhere does nothing.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free memory held by the allocator; it
    // takes no pointers and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
