//! The real servers Escalera's tests start for themselves, each from the machine's own
//! packages (`scripts/tools.sh --test` installs them), on loopback or a Unix socket only, and
//! gone with the test process however it ends:
//! - [`postgres`]: a PostgreSQL cluster, one fresh database per test;
//! - [`nats`]: a NATS server;
//! - [`haproxy`]: HAProxy in front of relay nodes.

use std::path::Path;

pub mod haproxy;
pub mod nats;
pub mod postgres;

/// Runs the shell command line `server` in the background, its output in `dir/log`, until
/// this process ends, however it ends: a shell started with it holds a pipe from this process
/// and, when the pipe closes, stops the server with `signal` (`INT`, `TERM`: the one that
/// makes it stop at once) and deletes `dir`. The child is kept for its pipe (closing its stdin
/// stops the server early). A server that does not set its own handler for SIGINT ignores it
/// here (a shell's background job starts with SIGINT ignored): HAProxy needs `TERM`.
pub fn until_this_process_ends(server: &str, dir: &Path, signal: &str) -> std::process::Child {
    let script = format!(
        "{server} >'{log}' 2>&1 & pid=$!; cat >/dev/null; kill -{signal} $pid; wait $pid; rm -rf '{dir}'",
        log = dir.join("log").display(),
        dir = dir.display(),
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs")
}

/// A loopback port free a moment ago (another process may take it before it is bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts connections on `127.0.0.1:port`, or panics after `secs`
/// with `log` (the server's output) to say why.
pub fn wait_for_port(port: u16, secs: u64, log: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
