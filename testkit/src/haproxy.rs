//! HAProxy (Debian's `haproxy`, 2.6 or later) in front of relay nodes, on a free loopback
//! port, one per call, gone with the test process (or when dropped).

use std::path::PathBuf;

/// A running HAProxy.
pub struct Proxy {
    /// The port its frontend listens on (127.0.0.1).
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shell: std::process::Child,
}

impl Proxy {
    /// HAProxy with `config`, a whole configuration in which `{port}` is replaced by `port`
    /// (e.g. [`crate::free_port`]), which its frontend binds on 127.0.0.1; ready once that
    /// port accepts.
    pub fn start(port: u16, config: &str) -> Proxy {
        let dir: PathBuf = tempfile::Builder::new()
            .prefix("escalera-haproxy-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config.replace("{port}", &port.to_string())).unwrap();
        let check = std::process::Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&file)
            .output()
            .expect("haproxy runs (scripts/tools.sh --test installs it)");
        assert!(
            check.status.success(),
            "haproxy refuses the configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        // -db: in the foreground, for the shell that stops it.
        let shell = crate::until_this_process_ends(
            &format!("haproxy -db -f '{}'", file.display()),
            &dir,
            "TERM",
        );
        crate::wait_for_port(port, 30, &dir.join("log"));
        Proxy {
            port,
            url: format!("http://127.0.0.1:{port}"),
            shell,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.shell.stdin.take());
        let _ = self.shell.wait();
    }
}
