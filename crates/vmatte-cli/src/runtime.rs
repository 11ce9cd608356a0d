//! Process-wide settings made once, before any thread starts.

/// Keeps candle's element-wise ops on the thread that calls them. candle
/// runs them on a pool of its own whose workers spin for a while after each
/// op, at the very moments vmatte's kernels and gemm start on rayon's
/// workers; on a machine whose cores rayon already fills, the spinning
/// worker takes a core from them (docs/benchmarks.md has the measurement).
/// A CANDLE_NUM_THREADS of the user's own is kept. Called before any
/// thread starts, as setting the environment requires.
pub fn leave_cores_to_rayon() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keeps freed frame-sized buffers in the process instead of handing them
/// back to the kernel. Every frame allocates and frees the same few dozen
/// multi-megabyte tensors; glibc serves blocks that large with mmap and
/// unmaps them on free, so each frame paid again for zeroed pages. The
/// working set of one frame is what
/// stays, so peak memory is unchanged and still flat over a video.
pub fn keep_freed_memory() {
    keep_freed_blocks();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread is started.
    unsafe {
        // One arena: the per-thread ones grow in heaps of at most 64 MiB,
        // so a chunk of 1080p frames (100 MB of f32) was still mapped and
        // unmapped by the decode thread every chunk, whatever the
        // threshold. The pipeline allocates a few large buffers per chunk,
        // so one lock costs nothing measurable.
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The part of [`keep_freed_memory`] a library may do in a host program
/// (the Python package, at import): large freed blocks stay in the process
/// instead of going back to the kernel, so the next frame's do not fault in
/// fresh zeroed pages. The arenas are the host's business and left alone.
pub fn keep_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, under the allocator's
    // own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// A panic is a bug, said in one line. On the thread that runs the command
/// line (the calling one: the binary's main thread, or the Python
/// interpreter's for the package's `vmatte` script) it ends the process
/// (status 101); on any other thread the job it happened in fails with the
/// panic's message (the engine and the pipeline catch it), so nothing is
/// printed here and the progress display stays whole.
pub fn one_line_panics() {
    let cli_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != cli_thread {
            return;
        }
        let what = vmatte_pipeline::panic_text(info.payload());
        // `vmatte presets | head`: the reader went away. Not a bug: end
        // quietly, as a shell tool killed by SIGPIPE does (128 + 13).
        if what.starts_with("failed printing to stdout") && what.contains("Broken pipe") {
            std::process::exit(141);
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("vmatte: internal error (a bug): {what}{at}; please report it");
    }));
}
