//! A NATS server for the tests (Debian's `nats-server`, which `scripts/tools.sh --test`
//! installs), on a free loopback port, one per test process, gone with it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Server {
    /// Its client URL.
    pub url: String,
    _shell: std::process::Child,
}

/// A server of its own, for a test that stops it.
pub fn own() -> Server {
    start()
}

impl Server {
    /// Stops the server (its shell stops it once its stdin closes) and waits for it.
    pub fn stop(mut self) {
        drop(self._shell.stdin.take());
        let _ = self._shell.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::Builder::new()
        .prefix("escalera-nats-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    let shell = crate::until_this_process_ends("nats-server -a 127.0.0.1 -p -1", &dir, "INT");
    // The port it took, from its log.
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let said = log.lines().find_map(|l| {
            l.split_once("Listening for client connections on ")
                .map(|(_, addr)| addr.trim().to_owned())
        });
        if let Some(addr) = said {
            break format!("nats://{addr}");
        }
        assert!(
            Instant::now() < deadline,
            "nats-server did not start: {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Server { url, _shell: shell }
}

/// This process's NATS server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}
