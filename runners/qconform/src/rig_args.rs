//! The options every subcommand that launches QEMU shares: where the matrix and the guest
//! assets are, and how long a live session or a guest boot may take.

use std::path::PathBuf;
use std::time::Duration;

use qconform_conformance::config::default_guest_root;
use qconform_qemu::matrix;

/// Where the real binaries and guest assets are, and the timeouts of live checks and boots.
#[derive(Debug, Clone, clap::Args)]
pub struct RigArgs {
    /// Matrix root [default: $QCONFORM_MATRIX_ROOT, else ~/.cache/qconform/matrix].
    #[arg(long)]
    pub matrix_root: Option<PathBuf>,
    /// Guest assets root [default: $QCONFORM_GUEST_ROOT, else ~/.cache/qconform/guest].
    #[arg(long)]
    pub guest_root: Option<PathBuf>,
    /// Seconds a live QEMU session may take per phase.
    #[arg(long, default_value_t = 120)]
    pub live_timeout: u64,
    /// Seconds a guest boot may take.
    #[arg(long, default_value_t = 300)]
    pub guest_timeout: u64,
}

impl RigArgs {
    /// The matrix root given, or the default one.
    pub fn matrix_root(&self) -> Option<PathBuf> {
        self.matrix_root.clone().or_else(matrix::default_root)
    }

    /// The guest assets root given, or the default one.
    pub fn guest_root(&self) -> Option<PathBuf> {
        self.guest_root.clone().or_else(default_guest_root)
    }

    /// The live-session timeout (at least a second).
    pub fn live_timeout(&self) -> Duration {
        Duration::from_secs(self.live_timeout.max(1))
    }

    /// The guest-boot timeout (at least a second).
    pub fn guest_timeout(&self) -> Duration {
        Duration::from_secs(self.guest_timeout.max(1))
    }
}
