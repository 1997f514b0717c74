//! The process's descriptor table, grown once at start to hold every device connection.
//!
//! Linux grows a process's table of file descriptors when a new descriptor does not fit, by
//! doubling it (from the gateway's 256 slots at start to 16,384 for 10,000 connections: six
//! times). In a process with several threads each growth first waits for an RCU grace period
//! (`expand_fdtable` in `fs/file.c`: `synchronize_rcu()` when the table is shared), 7-27 ms on
//! the test VM, inside the syscall that needed the descriptor: an MQTT I/O thread's `accept4`,
//! which serves none of its connections meanwhile. A single-threaded broker (mosquitto) never
//! waits. Grown here, before the runtime's threads exist, it takes no wait at all, and the table
//! never shrinks. It is kernel memory (8 bytes a slot, not in the gateway's RSS): 128 KB for
//! the default `mqtt.max_connections`. docs/BENCHMARKS.md, "Idle connections", tenth step.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Descriptors kept for everything but device connections (store, HTTP clients and API,
/// sinks, archive files, listeners).
const HEADROOM: usize = 1024;

/// The table's size when device connections are not limited (`mqtt.max_connections = 0`):
/// beyond it the table grows on demand again.
const UNLIMITED: usize = 65_536;

/// Why the table could not be grown (the gateway runs anyway: it then grows on demand).
#[derive(Debug, thiserror::Error)]
pub enum FdTableError {
    /// `getrlimit` or the descriptor that grows the table failed.
    #[error("{0}")]
    Os(#[from] std::io::Error),
}

/// Grow the descriptor table to hold `max_connections` device connections (0: no limit) and
/// the gateway's other descriptors, within the soft `RLIMIT_NOFILE`; the slots it now has.
pub fn reserve(max_connections: usize) -> Result<usize, FdTableError> {
    let wanted = match max_connections {
        0 => UNLIMITED,
        n => n.saturating_add(HEADROOM),
    };
    // A descriptor numbered `highest` makes the kernel size the table past it (rounded up to a
    // power of two); it is closed at once.
    let highest = wanted.min(soft_limit()?).saturating_sub(1);
    let null = std::fs::File::open("/dev/null")?;
    let highest_arg = libc::c_int::try_from(highest).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor onto the lowest free number at or
    // above `highest_arg`; the result is owned (and closed) below.
    let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest_arg) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `fd` was just returned by fcntl and is owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(highest + 1)
}

/// The soft `RLIMIT_NOFILE`: descriptors are numbered below it.
fn soft_limit() -> Result<usize, std::io::Error> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes the limit into `limit`, a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    /// The slots of this process's descriptor table (`FDSize` in /proc/self/status).
    fn fd_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_table_holds_the_connections_and_the_headroom() {
        // Far above what a test process grows to by itself (64 or 256 slots), or the limit.
        let connections = 8192;
        let expected = (connections + super::HEADROOM).min(super::soft_limit().unwrap());
        let slots = super::reserve(connections).unwrap();
        assert_eq!(slots, expected);
        assert!(fd_size() >= slots, "FDSize {} < {slots}", fd_size());
    }

    #[test]
    fn no_limit_on_connections_asks_for_the_unlimited_size() {
        let expected = super::UNLIMITED.min(super::soft_limit().unwrap());
        assert_eq!(super::reserve(0).unwrap(), expected);
        assert!(fd_size() >= expected, "FDSize {} < {expected}", fd_size());
    }
}
