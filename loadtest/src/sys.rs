//! What the harness reads from /proc: RSS, socket memory, listening pids, environment.

use std::collections::HashSet;

use serde::Serialize;

/// VmRSS of a process, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn self_rss_kib() -> u64 {
    rss_kib(std::process::id()).unwrap_or(0)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SockStat {
    pub tcp_inuse: u64,
    pub tcp_tw: u64,
    pub tcp_alloc: u64,
    /// Kernel TCP buffer memory, pages (`mem` in /proc/net/sockstat).
    pub tcp_mem_pages: u64,
    pub tcp_mem_kib: u64,
}

pub fn sockstat() -> SockStat {
    let mut out = SockStat::default();
    let Ok(s) = std::fs::read_to_string("/proc/net/sockstat") else {
        return out;
    };
    if let Some(l) = s.lines().find(|l| l.starts_with("TCP:")) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        let mut i = 1;
        while i + 1 < parts.len() {
            let v: u64 = parts[i + 1].parse().unwrap_or(0);
            match parts[i] {
                "inuse" => out.tcp_inuse = v,
                "tw" => out.tcp_tw = v,
                "alloc" => out.tcp_alloc = v,
                "mem" => out.tcp_mem_pages = v,
                _ => {}
            }
            i += 2;
        }
    }
    let page = 4; // KiB; /proc/net/sockstat counts pages
    out.tcp_mem_kib = out.tcp_mem_pages * page;
    out
}

/// The pid listening on TCP `port` (any local address), via /proc/net/tcp{,6} and /proc/*/fd.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(s) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in s.lines().skip(1) {
            let p: Vec<&str> = l.split_whitespace().collect();
            if p.len() < 10 || p[3] != "0A" {
                continue;
            }
            let lport = p[1]
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if lport == Some(port) {
                inodes.insert(format!("socket:[{}]", p[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.contains(link.to_string_lossy().as_ref()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub cores: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub mem_total_kib: u64,
    pub hostname: String,
    pub open_files_limit: String,
    pub harness_version: &'static str,
}

pub fn environment() -> Environment {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let limits = read("/proc/self/limits");
    Environment {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("")
            .trim()
            .to_string(),
        mem_total_kib: meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        open_files_limit: limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .map(|l| {
                l.split_whitespace()
                    .skip(3)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default(),
        harness_version: env!("CARGO_PKG_VERSION"),
    }
}
