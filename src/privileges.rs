//! Dropping root after binding: `--user NAME[:GROUP]` and `--chroot DIR`.
//!
//! Policy for the `keel` binary (the library never changes the process's
//! identity; an embedder may call [`drop_privileges`] itself). The order is
//! the one that leaves no way back: look the user and group up (before a
//! chroot hides `/etc/passwd`), `chroot` and `chdir("/")`, then
//! `setgroups` to the one group, `setgid`, `setuid`, and finally check that
//! `setuid(0)` fails and every id is the new one.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Whom to become, and where to be jailed: see [`drop_privileges`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Privileges {
    /// `NAME` or `NAME:GROUP`: the account to run as (its primary group
    /// unless `GROUP` is given). `None`: keep the current identity.
    pub user: Option<String>,
    /// Directory to `chroot(2)` into (needs root). Paths opened after the
    /// drop (a reopened access log) are then resolved inside it.
    pub chroot: Option<PathBuf>,
}

/// Why privileges could not be dropped. The process must not serve then.
#[derive(Debug)]
pub struct PrivilegeError {
    what: String,
    source: Option<io::Error>,
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for PrivilegeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

fn err(what: impl Into<String>, source: Option<io::Error>) -> PrivilegeError {
    PrivilegeError {
        what: what.into(),
        source,
    }
}

/// Drops to `p.user` (and into `p.chroot`), for a process that has already
/// bound its listeners and opened its files as root. Does nothing when both
/// are `None`. Call it before other threads start: the ids change for the
/// calling thread's process (glibc propagates them to every thread, but a
/// thread started earlier may have acted as root in between).
///
/// # Errors
/// The user or group does not exist, a call fails (not root, say), or root
/// could be regained afterwards. The process must then exit.
pub fn drop_privileges(p: &Privileges) -> Result<(), PrivilegeError> {
    let target = match &p.user {
        None => None,
        Some(spec) => {
            let (user, group) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec.as_str(), None),
            };
            if user.is_empty() || group.is_some_and(str::is_empty) {
                return Err(err(
                    format!("invalid --user '{spec}': use NAME or NAME:GROUP"),
                    None,
                ));
            }
            let account = crate::sys::user_by_name(user)
                .map_err(|e| err(format!("cannot look up user '{user}'"), Some(e)))?
                .ok_or_else(|| err(format!("no such user '{user}'"), None))?;
            let gid = match group {
                None => account.gid,
                Some(g) => crate::sys::group_by_name(g)
                    .map_err(|e| err(format!("cannot look up group '{g}'"), Some(e)))?
                    .ok_or_else(|| err(format!("no such group '{g}'"), None))?,
            };
            Some((account.uid, gid))
        }
    };
    if let Some(dir) = &p.chroot {
        crate::sys::chroot(dir)
            .map_err(|e| err(format!("cannot chroot to {}", dir.display()), Some(e)))?;
    }
    let Some((uid, gid)) = target else {
        return Ok(());
    };
    crate::sys::set_groups(&[gid]).map_err(|e| err("setgroups failed", Some(e)))?;
    crate::sys::set_gid(gid).map_err(|e| err(format!("setgid({gid}) failed"), Some(e)))?;
    crate::sys::set_uid(uid).map_err(|e| err(format!("setuid({uid}) failed"), Some(e)))?;
    let (ruid, euid, rgid, egid) = crate::sys::ids();
    if (ruid, euid, rgid, egid) != (uid, uid, gid, gid) {
        return Err(err(
            format!("ids are {ruid}/{euid}/{rgid}/{egid} after the drop, not {uid}/{gid}"),
            None,
        ));
    }
    if uid != 0 && crate::sys::set_uid(0).is_ok() {
        return Err(err(
            "root could be regained after dropping privileges",
            None,
        ));
    }
    log::info!("running as uid {uid}, gid {gid}");
    Ok(())
}
