//! What a Linux binary needs of the host that runs it: its architecture and, when it is linked
//! dynamically, the newest glibc symbol version it requires (`GLIBC_2.34`), read from its ELF
//! headers. A fleet ships the binary that runs the campaign to instances it has never seen:
//! a build linked against a newer glibc than the instance's, or for another architecture, fails
//! there with `not found` or `Exec format error` and nothing else. Knowing the needs lets the
//! coordinator refuse such instances by name before anything is sent.
//!
//! Only what that question needs is read (the file header, the program headers for an
//! interpreter, the section headers and the `.gnu.version_r` table with its string table), by
//! offset: an 80–200 MB binary is never loaded whole.

use std::fmt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A processor architecture, as `uname -m` names it on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `x86_64` (ELF machine 62).
    X86_64,
    /// `aarch64` (ELF machine 183; Graviton).
    Aarch64,
    /// Any other ELF machine number.
    Other(u16),
}

impl Arch {
    fn from_machine(m: u16) -> Arch {
        match m {
            62 => Arch::X86_64,
            183 => Arch::Aarch64,
            m => Arch::Other(m),
        }
    }

    /// True when `uname -m` printed this architecture (`arm64` is aarch64 too).
    pub fn is_uname(&self, uname: &str) -> bool {
        match self {
            Arch::X86_64 => uname == "x86_64" || uname == "amd64",
            Arch::Aarch64 => uname == "aarch64" || uname == "arm64",
            Arch::Other(_) => false,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::X86_64 => f.write_str("x86_64"),
            Arch::Aarch64 => f.write_str("aarch64"),
            Arch::Other(m) => write!(f, "ELF machine {m}"),
        }
    }
}

/// A glibc version (`2.34`), ordered as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32);

impl GlibcVersion {
    /// `2.34` (or `2.34.1`: the third part is never part of a symbol version's meaning here).
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(GlibcVersion(major, minor))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a binary needs of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryNeeds {
    /// The architecture it was built for.
    pub arch: Arch,
    /// True when it names an interpreter (`ld-linux…`): linked dynamically, so the host's C
    /// library must be recent enough.
    pub dynamic: bool,
    /// The newest `GLIBC_x.y` symbol version it requires (dynamic builds against glibc).
    pub glibc: Option<GlibcVersion>,
}

impl fmt::Display for BinaryNeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dynamic, self.glibc) {
            (false, _) => write!(f, "{}, statically linked", self.arch),
            (true, Some(g)) => write!(f, "{}, linked dynamically against glibc ≥ {g}", self.arch),
            (true, None) => write!(f, "{}, linked dynamically", self.arch),
        }
    }
}

const PT_INTERP: u32 = 3;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// Reads the needs of the binary at `path`.
pub fn needs(path: &Path) -> Result<BinaryNeeds> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let not_elf = |why: &str| {
        Error::Usage(format!(
            "{}: not a 64-bit little-endian ELF executable ({why})",
            path.display()
        ))
    };
    let read = |offset: u64, len: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(buf)
    };
    let header = read(0, 64).map_err(|_| not_elf("too short"))?;
    if header[..4] != *b"\x7fELF" {
        return Err(not_elf("no ELF magic"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(not_elf("class or byte order"));
    }
    let arch = Arch::from_machine(u16_at(&header, 0x12));
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 0x20),
        u16_at(&header, 0x36) as u64,
        u16_at(&header, 0x38) as u64,
    );
    let (shoff, shentsize, shnum) = (
        u64_at(&header, 0x28),
        u16_at(&header, 0x3a) as u64,
        u16_at(&header, 0x3c) as u64,
    );
    let phdrs = read(phoff, (phentsize * phnum) as usize)?;
    let dynamic =
        (0..phnum).any(|i| u32_at(&phdrs, (i * phentsize) as usize) == PT_INTERP && phentsize >= 4);
    let shdrs = read(shoff, (shentsize * shnum) as usize)?;
    let section = |i: u64| -> (u32, u64, u64, u32, u32) {
        let s = (i * shentsize) as usize;
        (
            u32_at(&shdrs, s + 4),
            u64_at(&shdrs, s + 24),
            u64_at(&shdrs, s + 32),
            u32_at(&shdrs, s + 40),
            u32_at(&shdrs, s + 44),
        )
    };
    let mut glibc = None;
    for i in 0..shnum {
        let (kind, offset, size, link, count) = section(i);
        if kind != SHT_GNU_VERNEED || (link as u64) >= shnum {
            continue;
        }
        let table = read(offset, size as usize)?;
        let (_, str_offset, str_size, _, _) = section(link as u64);
        let strings = read(str_offset, str_size as usize)?;
        for name in verneed_names(&table, count, &strings) {
            let version = name.strip_prefix("GLIBC_").and_then(GlibcVersion::parse);
            glibc = glibc.max(version);
        }
    }
    Ok(BinaryNeeds {
        arch,
        dynamic,
        glibc,
    })
}

/// The version names a `.gnu.version_r` table requires (`GLIBC_2.34`, `GCC_3.0`, …).
fn verneed_names(table: &[u8], count: u32, strings: &[u8]) -> Vec<String> {
    let name_at = |off: usize| -> Option<String> {
        let rest = strings.get(off..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let mut names = Vec::new();
    let mut need = 0usize;
    for _ in 0..count {
        if need + 16 > table.len() {
            break;
        }
        let aux_count = u16_at(table, need + 2);
        let mut aux = need + u32_at(table, need + 8) as usize;
        for _ in 0..aux_count {
            if aux + 16 > table.len() {
                break;
            }
            if let Some(n) = name_at(u32_at(table, aux + 8) as usize) {
                names.push(n);
            }
            match u32_at(table, aux + 12) {
                0 => break,
                next => aux += next as usize,
            }
        }
        match u32_at(table, need + 12) {
            0 => break,
            next => need += next as usize,
        }
    }
    names
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself against what binutils' `objdump -T` reads from it: the same
    /// architecture and the same newest `GLIBC_` version.
    #[test]
    fn the_needs_of_this_binary_are_what_objdump_reads() {
        let exe = std::env::current_exe().unwrap();
        let n = needs(&exe).unwrap();
        assert_eq!(
            n.arch.to_string(),
            std::env::consts::ARCH,
            "the architecture of the build"
        );
        assert!(n.dynamic, "a test binary is linked dynamically");
        let Ok(out) = std::process::Command::new("objdump")
            .arg("-T")
            .arg(&exe)
            .output()
        else {
            eprintln!("objdump is not installed: the glibc version is checked for presence only");
            assert!(n.glibc.is_some());
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let newest = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .filter_map(|w| w.strip_prefix("GLIBC_"))
            .filter_map(GlibcVersion::parse)
            .max();
        assert_eq!(n.glibc, newest, "{n}");
    }

    #[test]
    fn a_file_that_is_not_elf_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("trialrunner");
        std::fs::write(&f, "#!/bin/sh\necho not a binary\n").unwrap();
        let e = needs(&f).unwrap_err().to_string();
        assert!(
            e.contains("trialrunner") && e.contains("not a 64-bit"),
            "{e}"
        );
    }

    #[test]
    fn glibc_versions_order_as_numbers() {
        assert!(GlibcVersion::parse("2.34").unwrap() > GlibcVersion::parse("2.4").unwrap());
        assert_eq!(
            GlibcVersion::parse("2.26.1"),
            Some(GlibcVersion(2, 26)),
            "a patch level is ignored"
        );
        assert_eq!(GlibcVersion::parse("PRIVATE"), None);
    }
}
