//! `escalera`: the relay's command line. Parses flags (each also an `ESCALERA_*` variable) and
//! hands over to the library.
#![forbid(unsafe_code)]

/// mimalloc: less overhead per small allocation than glibc's malloc (an idle socket is
/// mostly small ones), and freed memory goes back to the system (argon2's 19 MiB). Built with
/// `--features system-alloc`, the relay uses the system's malloc instead, which heap profilers
/// such as heaptrack can see (README, "Where an idle socket's bytes go").
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use escalera_protocol::SiteKey;
use escalera_relay::http::{snippet, DemoPage};
use escalera_relay::postgres::PgStore;
use escalera_relay::sqlite::SqliteStore;
use escalera_relay::store::Directory;
use escalera_relay::{assets, now_ms, secrets, settings, Config, Relay};

/// Escalera: live chat, voice, video and screen sharing for any website.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Where the SQLite database lives.
    #[arg(
        long,
        global = true,
        env = "ESCALERA_DATA_DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
    /// Keep the record in PostgreSQL (postgres://user:password@host:port/database) instead of
    /// SQLite in the data dir; uploaded files stay in DATA_DIR/files, which every node must
    /// share.
    #[arg(
        long,
        global = true,
        env = "ESCALERA_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// The NATS server that carries events between the nodes on one PostgreSQL database
    /// (nats://host:4222); without it, this node is alone on its database.
    #[arg(
        long,
        global = true,
        env = "ESCALERA_BUS_URL",
        requires = "database_url",
        hide_env_values = true
    )]
    bus: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// The store's directory, for the command line's changes: PostgreSQL at `database_url`, or
/// SQLite in `data_dir`.
fn directory(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<Box<dyn Directory>> {
    Ok(match database_url {
        Some(url) => Box::new(block_on(PgStore::connect(url))?),
        None => Box::new(SqliteStore::open(data_dir)?),
    })
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the relay (and the demo host page).
    Serve(ServeArgs),
    /// Manage agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Manage sites.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Move a single-node install to PostgreSQL: every message, file record and setting, in
    /// one transaction. The files' bytes stay in the data dir, which the nodes then share.
    Migrate {
        /// The install to move: sqlite:DATA_DIR.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database to move it to (empty): postgres://user:password@host/db.
        #[arg(long)]
        to: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the relay (console, widget, API, WebSocket).
    #[arg(long, env = "ESCALERA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the demo host page, a separate origin that embeds the widget. "off" disables it.
    #[arg(long, env = "ESCALERA_DEMO_LISTEN", default_value = "127.0.0.1:8081")]
    demo_listen: String,
    /// The URL browsers use to reach the relay (defaults to http://LISTEN).
    #[arg(long, env = "ESCALERA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve the client from this folder instead of the copy built into the binary.
    #[arg(long, env = "ESCALERA_ASSETS")]
    assets: Option<PathBuf>,
    /// The largest file a participant may upload (bytes, or with K, M or G: 25M = 25 MiB).
    #[arg(long, env = "ESCALERA_MAX_UPLOAD", default_value = "25M", value_parser = parse_size)]
    max_upload: u64,
    /// A STUN server for the browsers, e.g. stun:stun.example.org:3478 (repeatable; comma-separated in the env).
    #[arg(long = "stun", env = "ESCALERA_STUN", value_delimiter = ',')]
    stun: Vec<String>,
    /// A TURN server, e.g. turn:turn.example.org:3478?transport=udp (repeatable; comma-separated in the env).
    #[arg(long = "turn-url", env = "ESCALERA_TURN_URL", value_delimiter = ',')]
    turn: Vec<String>,
    /// The TURN server's shared secret (coturn static-auth-secret): browsers get short-lived
    /// credentials. Visible in the process list: prefer --turn-secret-file.
    #[arg(long, env = "ESCALERA_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// A file holding the TURN secret (its first line), readable by the relay's user only.
    #[arg(
        long,
        env = "ESCALERA_TURN_SECRET_FILE",
        conflicts_with = "turn_secret"
    )]
    turn_secret_file: Option<PathBuf>,
    /// How long minted TURN credentials last, in seconds.
    #[arg(long, env = "ESCALERA_TURN_TTL", default_value_t = 3600)]
    turn_ttl: u64,
    /// How long a call rings without an answer before it is a missed call, in seconds.
    #[arg(long, env = "ESCALERA_RING_TIMEOUT", default_value_t = 30)]
    ring_timeout: u32,
    /// How long an active call waits for a party whose connection dropped (or for both, after
    /// a restart of the relay) before it ends, in seconds.
    #[arg(long, env = "ESCALERA_CALL_GRACE", default_value_t = 30)]
    call_grace: u32,
    /// Frames one connection may send per second, sustained; more are refused with rate_limited.
    #[arg(long, env = "ESCALERA_FRAME_RATE", default_value_t = 20)]
    frame_rate: u32,
    /// Frames one connection may send at once before the sustained rate applies.
    #[arg(long, env = "ESCALERA_FRAME_BURST", default_value_t = 100)]
    frame_burst: u32,
    /// Password checks at once (argon2 holds 19 MiB and a core each); more wait up to 2 s, then
    /// get 503. 0: half the cores, at least one.
    #[arg(long, env = "ESCALERA_LOGIN_CONCURRENCY", default_value_t = 0)]
    login_concurrency: usize,
    /// Login attempts per client address per 20 s (IPv6: per /64); more get 429.
    #[arg(long, env = "ESCALERA_LOGIN_PER_ADDRESS", default_value_t = 10)]
    login_per_address: u32,
    /// Login attempts per account (email) per 5 minutes, from anywhere; more get 429.
    #[arg(long, env = "ESCALERA_LOGIN_PER_ACCOUNT", default_value_t = 20)]
    login_per_account: u32,
    /// Open connections per client address (IPv6: per /64); more are closed at once.
    #[arg(long, env = "ESCALERA_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    connections_per_address: usize,
    /// Serve Prometheus metrics (GET /metrics) on this address, apart from the public one
    /// (e.g. 127.0.0.1:9100); off when unset.
    #[arg(long, env = "ESCALERA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Open connections in all; 0: the file-descriptor limit (raised to its hard limit) less 128.
    #[arg(long, env = "ESCALERA_MAX_CONNECTIONS", default_value_t = 0)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "ESCALERA_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a new WebSocket has to say hello.
    #[arg(long, env = "ESCALERA_HELLO_DEADLINE", default_value_t = 10)]
    hello_deadline: u64,
    /// Seconds of silence (not even a pong to the relay's pings) before a socket is closed.
    #[arg(long, env = "ESCALERA_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Sockets open at once for one visitor (tabs, devices); more are refused.
    #[arg(long, env = "ESCALERA_SOCKETS_PER_VISITOR", default_value_t = 16)]
    sockets_per_visitor: usize,
    /// New conversations per client address per hour (IPv6: per /64).
    #[arg(long, env = "ESCALERA_CONVERSATIONS_PER_ADDRESS", default_value_t = 60)]
    conversations_per_address: u32,
    /// Waiting conversations of one address shown in the agents' list (the oldest first).
    #[arg(long, env = "ESCALERA_LISTED_PER_ADDRESS", default_value_t = 20)]
    listed_per_address: u32,
    /// Chat messages per second from one visitor, over all their sockets (burst: 15 times).
    #[arg(long, env = "ESCALERA_VISITOR_CHAT_RATE", default_value_t = 2)]
    visitor_chat_rate: u32,
    /// Chat messages per second from all visitors of one address (burst: 10 times).
    #[arg(long, env = "ESCALERA_ADDRESS_CHAT_RATE", default_value_t = 30)]
    address_chat_rate: u32,
    /// Call starts and device toggles per conversation per minute.
    #[arg(long, env = "ESCALERA_CALL_ACTIONS_PER_MINUTE", default_value_t = 20)]
    call_actions_per_minute: u32,
    /// History messages per second one visitor may read over all their sockets (burst 5x).
    #[arg(long, env = "ESCALERA_VISITOR_HISTORY_RATE", default_value_t = 1000)]
    visitor_history_rate: u32,
    /// Seconds an agent's last console may be gone (a reload, a dropped network) before the
    /// team sees them offline.
    #[arg(long, env = "ESCALERA_PRESENCE_GRACE", default_value_t = 30)]
    presence_grace: u64,
    /// Seconds of no input with the console's tab hidden before it says away by itself (0:
    /// never).
    #[arg(long, env = "ESCALERA_AWAY_AFTER", default_value_t = 300)]
    away_after: u64,
    /// Files one conversation may hold in all, both sides (e.g. 200M).
    #[arg(long, env = "ESCALERA_CONVERSATION_QUOTA", default_value = "200M", value_parser = parse_size)]
    conversation_quota: u64,
    /// Files a visitor may upload before an agent has joined, in all (e.g. 10M; 0: none).
    #[arg(long, env = "ESCALERA_UPLOAD_ALLOWANCE", default_value = "10M", value_parser = parse_size)]
    upload_allowance: u64,
    /// Uploads slower than this per second, over any 10 s, are cut (e.g. 16K).
    #[arg(long, env = "ESCALERA_UPLOAD_MIN_RATE", default_value = "16K", value_parser = parse_size)]
    upload_min_rate: u64,
    /// Percent of the connection limit kept for agents and /healthz (visitors stop short).
    #[arg(long, env = "ESCALERA_AGENT_RESERVE", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=90))]
    agent_reserve: u8,
    /// Send email through this SMTP server (off when unset): `smtps://user:pass@host:465`
    /// (TLS), `smtp://user:pass@host:587?tls=required` (STARTTLS), or `smtp://host:25`
    /// (plain, for a local server only).
    #[arg(long, env = "ESCALERA_SMTP_URL", requires = "smtp_from")]
    smtp_url: Option<String>,
    /// The sender of Escalera's email, e.g. `Shop support <support@shop.example>`.
    #[arg(long, env = "ESCALERA_SMTP_FROM")]
    smtp_from: Option<String>,
    /// How long an agent's replies to a visitor who has left gather before they go out as
    /// one email, in seconds.
    #[arg(long, env = "ESCALERA_MAIL_BATCH", default_value_t = 30)]
    mail_batch: u64,
    /// With email: a conversation waiting this long with no agent available is mailed to its
    /// site's agents, in seconds.
    #[arg(long, env = "ESCALERA_ALERT_AFTER", default_value_t = 300)]
    alert_after: u64,
}

/// `1048576`, `512K`, `25M`, `1G` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s
        .trim()
        .trim_end_matches(['B', 'b'])
        .trim_end_matches(['i', 'I']);
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s}"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        u => return Err(format!("unknown unit {u}: use K, M or G")),
    };
    n.checked_mul(1 << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("bad size: {s}"))
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Add an agent. The password comes from ESCALERA_AGENT_PASSWORD, else it is prompted for.
    Add {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Display name, shown to visitors.
        #[arg(long)]
        name: String,
        /// Site keys this agent serves (repeatable); without any, every site.
        #[arg(long = "site")]
        sites: Vec<String>,
        /// How many open conversations routing gives them at most.
        #[arg(long, default_value_t = escalera_relay::store::DEFAULT_CHAT_LIMIT)]
        limit: u32,
        /// An admin: may change settings in the console (sites, agents, canned replies).
        #[arg(long)]
        admin: bool,
    },
    /// List the agents: email, name, sites, chat limit, whether disabled, browsers logged in.
    List,
    /// Set how many open conversations routing gives an agent at most (0: none, they take
    /// them by hand). A running relay uses it from the next console that connects.
    Limit {
        /// Login email.
        #[arg(long)]
        email: String,
        /// The limit.
        limit: u32,
    },
    /// Set an agent's password (from ESCALERA_AGENT_PASSWORD, else prompted for); their
    /// sessions end, so every browser logs in again.
    Passwd {
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// Disable an agent: they cannot log in, and their open consoles are closed within
    /// seconds.
    Disable {
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled agent again.
    Enable {
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// Remove an agent for good (what they wrote stays, under their name); their open
    /// consoles are closed within seconds.
    Remove {
        /// Login email.
        #[arg(long)]
        email: String,
    },
}

/// The password for `email`: ESCALERA_AGENT_PASSWORD, else asked for; at least 8 characters.
fn new_password(email: &str) -> anyhow::Result<String> {
    let password = match std::env::var("ESCALERA_AGENT_PASSWORD") {
        Ok(p) => p,
        Err(_) => rpassword::prompt_password(format!("Password for {email}: "))?,
    };
    if password.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(password)
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Add a site and print its key and embed snippet.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// An origin allowed to embed the widget, e.g. https://shop.example (repeatable).
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
        /// The URL browsers use to reach the relay, for the snippet.
        #[arg(
            long,
            env = "ESCALERA_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
    /// Choose what a site offers its visitors; only what is given changes. Sockets opened
    /// afterwards get it (the relay refuses what is off at once).
    Set {
        /// The site key.
        #[arg(long)]
        site: String,
        /// How far up the ladder: chat only, chat and voice, or chat, voice and video.
        #[arg(long, value_parser = ["chat", "voice", "video"])]
        steps: Option<String>,
        /// Screen sharing.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        screen: Option<bool>,
        /// Files.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        files: Option<bool>,
        /// Snapshots.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        snapshots: Option<bool>,
        /// Whether visitors must be verified users of the site (`Escalera.identify`).
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        identity_required: Option<bool>,
    },
    /// Show a site: name, origins and what it offers.
    Show {
        /// The site key.
        #[arg(long)]
        site: String,
    },
}

/// `escalera site set|show`.
fn site_command(store: &dyn Directory, command: SiteCommand) -> anyhow::Result<()> {
    let (key, change) = match command {
        SiteCommand::Add { .. } => unreachable!("handled by main"),
        SiteCommand::Show { site } => (site, None),
        SiteCommand::Set {
            site,
            steps,
            screen,
            files,
            snapshots,
            identity_required,
        } => (
            site,
            Some((steps, screen, files, snapshots, identity_required)),
        ),
    };
    let Some(site) = block_on(store.site(SiteKey(key.clone())))? else {
        bail!("no site with the key {key}");
    };
    let mut f = site.features;
    let mut required = site.identity_required;
    if let Some((steps, screen, files, snapshots, identity_required)) = change {
        if let Some(steps) = steps {
            f.voice = steps != "chat";
            f.video = steps == "video";
        }
        f.screen = screen.unwrap_or(f.screen);
        f.files = files.unwrap_or(f.files);
        f.snapshots = snapshots.unwrap_or(f.snapshots);
        required = identity_required.unwrap_or(required);
        let saved = escalera_relay::store::Site {
            features: f,
            identity_required: required,
            ..site.clone()
        };
        block_on(store.save_site(saved))?;
        let detail = format!(
            "{} ({}): offers {}; verified identity {}",
            site.name,
            site.key,
            settings::offers(&f),
            if required { "required" } else { "optional" }
        );
        block_on(settings::record(store, CLI, "site.update", detail));
    }
    println!("{}\t{}\t{}", site.key, site.name, site.origins.join(" "));
    println!("Offers: {}", settings::offers(&f));
    println!("Identity secret: {}", site.identity_secret);
    println!(
        "Verified identity: {}",
        if required { "required" } else { "optional" }
    );
    Ok(())
}

/// `escalera agent list|passwd|disable|enable|remove`.
fn agent_command(store: &dyn Directory, command: AgentCommand) -> anyhow::Result<()> {
    let found = |ok: bool, email: &str| {
        if ok {
            Ok(())
        } else {
            Err(anyhow::anyhow!("no agent with the email {email}"))
        }
    };
    let audit = |action: &str, detail: String| {
        block_on(settings::record(store, CLI, action, detail));
    };
    match command {
        AgentCommand::Add { .. } => unreachable!("handled by main"),
        AgentCommand::List => {
            let agents = block_on(store.agents(now_ms()))?;
            if agents.is_empty() {
                println!("No agents yet: add one with `escalera agent add`.");
            }
            for a in agents {
                let sites = match &a.agent.scope {
                    escalera_relay::core::Scope::All => "every site".to_owned(),
                    escalera_relay::core::Scope::Sites(s) => s
                        .iter()
                        .map(|k| k.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                println!(
                    "{}\t{}\t{}\tlimit {}\t{}\t{} logged in",
                    a.agent.email,
                    a.agent.agent.name,
                    sites,
                    a.agent.limit,
                    if a.disabled { "disabled" } else { "enabled" },
                    a.sessions
                );
            }
        }
        AgentCommand::Limit { email, limit } => {
            found(block_on(store.set_limit(email.clone(), limit))?, &email)?;
            audit("agent.update", format!("{email}: limit {limit}"));
            println!("{email} gets at most {limit} open conversations.");
        }
        AgentCommand::Passwd { email } => {
            let hash = secrets::hash_password(&new_password(&email)?);
            found(block_on(store.set_password(email.clone(), hash))?, &email)?;
            audit("agent.password", email.clone());
            println!("Password changed for {email}; every browser logs in again.");
        }
        AgentCommand::Disable { email } => {
            found(
                block_on(store.set_disabled(email.clone(), true, now_ms()))?,
                &email,
            )?;
            audit("agent.access", format!("{email}: disabled"));
            println!("Disabled {email}; open consoles close within seconds.");
        }
        AgentCommand::Enable { email } => {
            found(
                block_on(store.set_disabled(email.clone(), false, now_ms()))?,
                &email,
            )?;
            audit("agent.access", format!("{email}: enabled"));
            println!("Enabled {email}.");
        }
        AgentCommand::Remove { email } => {
            found(
                block_on(store.remove_agent(email.clone(), now_ms()))?,
                &email,
            )?;
            audit("agent.remove", email.clone());
            println!("Removed {email}; open consoles close within seconds.");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESCALERA_LOG")
                .unwrap_or_else(|_| "escalera=info,escalera_relay=info".into()),
        )
        .with_writer(std::io::stderr);
    match std::env::var("ESCALERA_LOG_FORMAT").as_deref() {
        // One JSON object per line, for a log collector.
        Ok("json") => logs.json().init(),
        // Colours only on a terminal: a log file or journal gets plain text.
        _ => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let Cli {
        data_dir,
        database_url,
        bus,
        command,
    } = Cli::parse();
    let directory = || directory(&data_dir, database_url.as_deref());
    match command {
        Command::Serve(args) => serve(data_dir.clone(), database_url.clone(), bus, args),
        Command::Agent {
            command:
                AgentCommand::Add {
                    email,
                    name,
                    sites,
                    limit,
                    admin,
                },
        } => {
            let store = directory()?;
            let password = new_password(&email)?;
            let sites: Vec<SiteKey> = sites.into_iter().map(SiteKey).collect();
            let scope = (!sites.is_empty()).then_some(sites);
            let hash = secrets::hash_password(&password);
            let agent = block_on(store.add_agent(email, name, hash, scope, now_ms()))?;
            if limit != escalera_relay::store::DEFAULT_CHAT_LIMIT {
                block_on(store.set_limit(agent.email.clone(), limit))?;
            }
            if admin {
                block_on(store.set_admin(agent.email.clone(), true))?;
            }
            let role = if admin { "admin" } else { "agent" };
            let detail = format!("{} <{}>: {role}", agent.agent.name, agent.email);
            block_on(settings::record(&*store, CLI, "agent.add", detail));
            println!("Added {role} {} <{}>", agent.agent.name, agent.email);
            Ok(())
        }
        Command::Agent { command } => agent_command(&*directory()?, command),
        Command::Site {
            command:
                SiteCommand::Add {
                    name,
                    origins,
                    public_url,
                },
        } => {
            let origins = origins
                .iter()
                .map(|o| settings::normalize_origin(o).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let store = directory()?;
            let site = block_on(store.add_site(name, origins, now_ms()))?;
            let detail = format!(
                "{} ({}), origins: {}",
                site.name,
                site.key,
                site.origins.join(" ")
            );
            block_on(settings::record(&*store, CLI, "site.add", detail));
            println!("Site key: {}", site.key);
            println!("Embed snippet:\n{}", snippet(&public_url, &site.key));
            Ok(())
        }
        Command::Site { command } => site_command(&*directory()?, command),
        Command::Migrate { from, to } => {
            let Some(dir) = from.strip_prefix("sqlite:") else {
                bail!("--from takes sqlite:DATA_DIR, not {from}");
            };
            let copied = block_on(escalera_relay::migrate::sqlite_to_postgres(
                std::path::Path::new(dir),
                &to,
            ))?;
            for (table, rows) in copied {
                println!("{table:<14} {rows:>9} rows");
            }
            println!(
                "Moved. Start the relay with --database-url and --data-dir {dir} (its files \
                 folder holds the uploads)."
            );
            Ok(())
        }
    }
}

#[tokio::main]
async fn serve(
    data_dir: PathBuf,
    database_url: Option<String>,
    bus: Option<String>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let demo_addr: Option<SocketAddr> = match args.demo_listen.as_str() {
        "off" | "" => None,
        a => Some(a.parse().context("--demo-listen")?),
    };
    if args.assets.is_none() && !assets::embedded() {
        tracing::warn!("no client is built into this binary: run `make build` (or pass --assets)");
    }
    let mail = match (args.smtp_url, args.smtp_from) {
        (Some(url), Some(from)) => {
            let config = escalera_relay::mail::MailConfig {
                url,
                from,
                batch_ms: args.mail_batch * 1000,
            };
            // Refused now rather than at the first email.
            escalera_relay::mail::Mailer::new(&config).map_err(anyhow::Error::msg)?;
            Some(config)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Ask the socket, so that `--listen 127.0.0.1:0` prints the port it got.
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://{}", listener.local_addr().expect("bound")))
        .trim_end_matches('/')
        .to_owned();
    let config = Config {
        assets_dir: args.assets,
        secure_cookies: public_url.starts_with("https://"),
        public_url: Some(public_url.clone()),
        ice: escalera_relay::ice::IceConfig {
            stun: args.stun,
            turn: args.turn,
            turn_secret: match &args.turn_secret_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                )
                .filter(|s| !s.is_empty()),
                None => args.turn_secret,
            },
            turn_ttl_secs: args.turn_ttl,
        },
        max_upload: args.max_upload,
        ring_timeout_ms: i64::from(args.ring_timeout) * 1000,
        call_grace_ms: i64::from(args.call_grace) * 1000,
        frame_rate: args.frame_rate.max(1),
        frame_burst: args.frame_burst.max(1),
        login: escalera_relay::guard::LoginLimits {
            concurrency: args.login_concurrency,
            per_address: args.login_per_address.max(1),
            per_account: args.login_per_account.max(1),
        },
        per_address_connections: args.connections_per_address.max(1),
        max_connections: args.max_connections,
        header_timeout_secs: args.header_timeout.max(1),
        hello_deadline_secs: args.hello_deadline.max(1),
        idle_timeout_secs: args.idle_timeout.max(3),
        sockets_per_visitor: args.sockets_per_visitor.max(1),
        conversations_per_address: args.conversations_per_address.max(1),
        listed_per_address: args.listed_per_address.max(1),
        visitor_chat_rate: args.visitor_chat_rate.max(1),
        address_chat_rate: args.address_chat_rate.max(1),
        call_actions_per_minute: args.call_actions_per_minute.max(1),
        visitor_history_rate: args.visitor_history_rate.max(1),
        presence_grace_secs: args.presence_grace,
        away_after_secs: args.away_after,
        conversation_quota: args.conversation_quota,
        upload_allowance: args.upload_allowance,
        upload_min_rate: args.upload_min_rate,
        agent_reserve_percent: args.agent_reserve,
        mail,
        alert_after_secs: args.alert_after,
        ..Config::default()
    };
    let relay = match &database_url {
        Some(url) => Relay::open_postgres(url, bus.as_deref(), &data_dir, config)
            .await
            .context("cannot open the PostgreSQL database or reach the bus")?,
        None => Relay::open(&data_dir, config)?,
    };
    let store = relay.state.hub.directory().clone();
    let demo = match demo_addr {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (demo page)"))?;
            let origin = format!("http://{}", l.local_addr()?);
            let site = demo_site(&*store, &origin).await?;
            Some((
                l,
                DemoPage {
                    relay_url: public_url.clone(),
                    site,
                },
            ))
        }
        None => None,
    };
    let first_agent = first_agent(&*store).await?;
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            let bound = listener.local_addr()?;
            let routes = escalera_relay::metrics::routes(relay.state.hub.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, routes).await {
                    tracing::error!("metrics: {e}");
                }
            });
            Some(bound)
        }
        None => None,
    };

    println!("Escalera is running.");
    println!("  Agent console: {public_url}/agent");
    if let Some((l, page)) = &demo {
        println!("  Demo host page: http://{}/", l.local_addr()?);
        println!("  Embed snippet: {}", page.snippet());
    }
    if let Some(addr) = metrics {
        println!("  Metrics: http://{addr}/metrics");
    }
    match first_agent {
        Some((email, password)) => {
            println!("  First agent (shown once): {email} / {password}");
        }
        None => println!("  Log in with an agent added by `escalera agent add`."),
    }
    relay.run(listener, demo, shutdown_signal()).await?;
    println!("Escalera stopped.");
    Ok(())
}

/// The demo site, created on first start; the demo page's origin is always allowed.
async fn demo_site(store: &dyn Directory, origin: &str) -> anyhow::Result<SiteKey> {
    let known = match store.setting("demo_site".into()).await? {
        Some(k) => store.site(SiteKey(k)).await?,
        None => None,
    };
    let key = match known {
        Some(site) => site.key,
        None => {
            let site = store
                .add_site("Demo shop".into(), Vec::new(), now_ms())
                .await?;
            store
                .set_setting("demo_site".into(), site.key.0.clone())
                .await?;
            site.key
        }
    };
    store.allow_origin(key.clone(), origin.to_owned()).await?;
    if let Some(port) = origin.strip_prefix("http://127.0.0.1:") {
        store
            .allow_origin(key.clone(), format!("http://localhost:{port}"))
            .await?;
    }
    Ok(key)
}

/// On a store with no agent, creates one with a generated password and returns the login.
async fn first_agent(store: &dyn Directory) -> anyhow::Result<Option<(String, String)>> {
    if store.agent_count().await? > 0 {
        return Ok(None);
    }
    let email = "agent@escalera.local".to_owned();
    let password = secrets::generate_password();
    let hash = secrets::hash_password(&password);
    store
        .add_agent(email.clone(), "Demo Agent".into(), hash, None, now_ms())
        .await?;
    store.set_admin(email.clone(), true).await?;
    Ok(Some((email, password)))
}

/// Who the audit log says made a change from the command line.
const CLI: &str = "command line";

/// Runs one store call from the command line (which has no runtime of its own), on one
/// runtime for the whole command: a PostgreSQL connection lives on the runtime it was made on.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
        .block_on(f)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25M"), Ok(25 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5T").is_err());
    }
}
