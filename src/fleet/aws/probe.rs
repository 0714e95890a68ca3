//! What an instance reported of itself ([`super::script::probe`]: `uname -m` and its glibc),
//! and whether the binary the coordinator ships can run there. Amazon Linux 2 has glibc 2.26,
//! Amazon Linux 2023 2.34, and Graviton instances are aarch64: a binary built on a newer or
//! other system fails there with nothing but `not found` or `Exec format error`.

use std::fmt;

use crate::fleet::elf::{BinaryNeeds, GlibcVersion};

/// The C library an instance has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLibc {
    /// glibc, this version.
    Glibc(GlibcVersion),
    /// musl (Alpine and the like).
    Musl,
    /// The probe could not tell; what it printed.
    Unknown(String),
}

/// What an instance said of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// `uname -m`.
    pub arch: String,
    /// Its C library.
    pub libc: HostLibc,
}

impl HostReport {
    /// Reads the probe's output (`arch=x86_64`, `libc=glibc 2.34` or ldd's first line).
    pub fn parse(stdout: &str) -> HostReport {
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let arch = field("arch=");
        let libc_line = field("libc=");
        let lower = libc_line.to_ascii_lowercase();
        let version = libc_line
            .split_whitespace()
            .filter_map(GlibcVersion::parse)
            .next_back();
        let libc = if lower.contains("musl") {
            HostLibc::Musl
        } else if lower.contains("glibc") || lower.contains("gnu libc") {
            version.map_or_else(|| HostLibc::Unknown(libc_line.clone()), HostLibc::Glibc)
        } else {
            HostLibc::Unknown(libc_line)
        };
        HostReport { arch, libc }
    }
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arch = if self.arch.is_empty() {
            "architecture unknown"
        } else {
            &self.arch
        };
        match &self.libc {
            HostLibc::Glibc(v) => write!(f, "{arch}, glibc {v}"),
            HostLibc::Musl => write!(f, "{arch}, musl"),
            HostLibc::Unknown(_) => write!(f, "{arch}, C library unknown"),
        }
    }
}

/// Why a binary with these needs cannot run on this host (`None`: it can, as far as the probe
/// tells; a C library the probe could not read is left to the binary's own first run).
pub fn misfit(needs: &BinaryNeeds, host: &HostReport) -> Option<String> {
    if !needs.arch.is_uname(&host.arch) {
        return Some(format!(
            "the binary is built for {}, the instance is {}",
            needs.arch,
            if host.arch.is_empty() {
                "of an unknown architecture"
            } else {
                &host.arch
            }
        ));
    }
    let (true, Some(want)) = (needs.dynamic, needs.glibc) else {
        return None;
    };
    match &host.libc {
        HostLibc::Glibc(have) if *have < want => Some(format!(
            "the binary needs glibc ≥ {want}, the instance has glibc {have}"
        )),
        HostLibc::Musl => Some(format!(
            "the binary is linked against glibc ≥ {want}, the instance's C library is musl"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::elf::Arch;

    const AL2023_BUILD: BinaryNeeds = BinaryNeeds {
        arch: Arch::X86_64,
        dynamic: true,
        glibc: Some(GlibcVersion(2, 34)),
    };

    #[test]
    fn the_probe_output_of_each_kind_of_host_reads_back() {
        let al2 = HostReport::parse("arch=aarch64\nlibc=glibc 2.26\n");
        assert_eq!(al2.arch, "aarch64");
        assert_eq!(al2.libc, HostLibc::Glibc(GlibcVersion(2, 26)));
        let ldd = HostReport::parse("arch=x86_64\nlibc=ldd (GNU libc) 2.36\n");
        assert_eq!(ldd.libc, HostLibc::Glibc(GlibcVersion(2, 36)));
        let alpine = HostReport::parse("arch=x86_64\nlibc=musl libc (x86_64)\n");
        assert_eq!(alpine.libc, HostLibc::Musl);
        let nothing = HostReport::parse("");
        assert!(matches!(nothing.libc, HostLibc::Unknown(_)));
    }

    #[test]
    fn a_build_fits_only_hosts_of_its_architecture_and_a_glibc_at_least_its_own() {
        let fits = |out: &str| misfit(&AL2023_BUILD, &HostReport::parse(out));
        assert_eq!(fits("arch=x86_64\nlibc=glibc 2.34"), None);
        assert_eq!(fits("arch=x86_64\nlibc=glibc 2.36"), None);
        let old = fits("arch=x86_64\nlibc=glibc 2.26").unwrap();
        assert!(old.contains("≥ 2.34") && old.contains("2.26"), "{old}");
        let graviton = fits("arch=aarch64\nlibc=glibc 2.34").unwrap();
        assert!(
            graviton.contains("x86_64") && graviton.contains("aarch64"),
            "{graviton}"
        );
        assert!(fits("arch=x86_64\nlibc=musl libc (x86_64)").is_some());
        let static_build = BinaryNeeds {
            dynamic: false,
            glibc: None,
            ..AL2023_BUILD
        };
        assert_eq!(
            misfit(
                &static_build,
                &HostReport::parse("arch=x86_64\nlibc=musl libc")
            ),
            None,
            "a static build needs no C library"
        );
    }
}
