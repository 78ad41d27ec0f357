//! A throwaway PostgreSQL server for the tests: the machine's own `initdb` and `postgres`
//! (15 or later; `scripts/tools.sh --test` installs Debian's), in a temporary directory,
//! listening on a Unix socket only (no TCP port at all), as `nobody` when the tests run as
//! root (PostgreSQL refuses to). One server per test process, one fresh database per test.
//!
//! The server goes with the test process: a shell started with it holds a pipe from this
//! process and, when the pipe closes (the process ended, however), stops PostgreSQL and
//! deletes its directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser of the test server (trusted on its socket).
const USER: &str = "escalera";

pub struct Server {
    socket: PathBuf,
    databases: AtomicU32,
    /// The shell, its stdin open until the process ends (never waited for: it outlives the
    /// tests on purpose, for the moment it takes to stop the server).
    _shell: std::process::Child,
}

/// The directory of PostgreSQL's programs: `ESCALERA_PG_BIN`, else Debian's newest.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ESCALERA_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no PostgreSQL server here: run scripts/tools.sh --test"),
    }
}

/// Whether this process runs as root (asked once).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    })
}

/// `program` with its arguments, as `nobody` when this process is root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Server {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("escalera-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    let (data, socket) = (dir.join("data"), dir.join("socket"));
    std::fs::create_dir(&socket).unwrap();
    if is_root() {
        let owned = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(owned.success(), "chown of {}", dir.display());
    }
    let init = as_server_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("initdb runs");
    assert!(
        init.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let postgres = format!(
        "{} {} -D '{}' -k '{}' -c listen_addresses= -c max_connections=200",
        if is_root() {
            "setpriv --reuid=nobody --regid=nogroup --clear-groups --"
        } else {
            ""
        },
        bin.join("postgres").display(),
        data.display(),
        socket.display(),
    );
    let shell = crate::until_this_process_ends(&postgres, &dir, "INT");
    // Ready when its socket answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = bin.join("pg_isready");
    loop {
        let ready = Command::new(&probe)
            .arg("-h")
            .arg(&socket)
            .args(["-U", USER, "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        socket,
        databases: AtomicU32::new(0),
        _shell: shell,
    }
}

/// This process's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

impl Server {
    /// The connection string of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "host={} user={USER} dbname={database}",
            self.socket.display()
        )
    }

    /// A new, empty database; its connection string.
    pub async fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("the test server answers");
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        drop(client);
        let _ = connection.await;
        self.url(&name)
    }
}

/// A fresh database on this process's server.
pub async fn database() -> String {
    server().database().await
}
