//! Finding or starting moto.
//!
//! [`endpoint`] prefers `AWS_ENDPOINT_URL` (set by `make test`/`make demo`, which start moto
//! through `scripts/moto.sh`), and otherwise runs `scripts/moto.sh start` itself, so a plain
//! `cargo test` also works. [`PrivateMoto`] is a server owned by one test, killed on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

/// The workspace root (where `scripts/` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The endpoint of the shared local moto server, starting it if needed.
pub async fn endpoint() -> Result<String> {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        if !url.trim().is_empty() {
            return Ok(url.trim().to_owned());
        }
    }
    let out = Command::new(workspace_root().join("scripts/moto.sh"))
        .arg("start")
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running scripts/moto.sh start")?;
    if !out.status.success() {
        bail!("scripts/moto.sh start failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A moto server owned by the caller, on its own port; killed when dropped.
pub struct PrivateMoto {
    child: Child,
    /// Its endpoint URL.
    pub url: String,
}

impl PrivateMoto {
    /// Starts one (the venv must exist: `scripts/ensure-tools.sh`).
    pub async fn start() -> Result<Self> {
        Self::start_with_stats(None).await
    }

    /// Starts one that writes its load statistics to `stats` (see `scripts/moto_server.py`).
    pub async fn start_with_stats(stats: Option<&std::path::Path>) -> Result<Self> {
        let root = workspace_root();
        let st = Command::new(root.join("scripts/ensure-tools.sh")).status().await?;
        if !st.success() {
            bail!("scripts/ensure-tools.sh failed");
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        // moto_server with DynamoDB requests made atomic, as on AWS (see the script).
        let mut cmd = Command::new(root.join(".venv/bin/python"));
        cmd.arg(root.join("scripts/moto_server.py")).args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        // Its load is its own: it must not overwrite the shared server's statistics.
        match stats {
            Some(path) => cmd.env("MOTO_STATS_FILE", path),
            None => cmd.env_remove("MOTO_STATS_FILE"),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning moto_server")?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("private moto_server did not start on port {port}")
    }

    /// Stops the server now (as an outage would).
    pub async fn stop(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
