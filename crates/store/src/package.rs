//! Code packages: the zip files users upload as function code (`Code.ZipFile` in
//! `CreateFunction` / `UpdateFunctionCode`).
//!
//! A package is validated with [`inspect`], kept content-addressed by [`CodeStore`]
//! (`<root>/<sha256 hex>.zip`), and later unpacked with [`extract`] into the read-only
//! code directory of a sandbox.
//!
//! # Threats handled
//!
//! Every zip comes from an untrusted user, so nothing in it is believed without checking:
//!
//! - **Malformed archives.** Anything the zip reader cannot parse, truncated data, bad
//!   deflate streams and CRC-32 mismatches are all reported as [`PackageError::Corrupt`].
//!   Every entry is decompressed completely (by [`inspect`] as well as by [`extract`]), so
//!   each CRC is actually checked. The central directory is also walked by hand to detect
//!   duplicate names, which the zip reader would otherwise silently merge.
//! - **Zip bombs.** The sizes in the headers are ignored: the bytes that really come out
//!   of the decompressor are counted, and decompression stops as soon as the running total
//!   passes [`Limits::max_unzipped_bytes`]. That also covers "size lies" (a header
//!   claiming a few bytes for a stream that inflates to gigabytes) and overlapping entries
//!   that share one compressed stream. The entry count is capped by
//!   [`Limits::max_entries`] (checked against the end-of-central-directory record before
//!   the archive is even parsed), and so is the number of directories that entry paths
//!   create implicitly.
//! - **Path traversal ("zip slip").** Entry names must be relative, must not contain a
//!   `..` component, a backslash, a NUL byte or a drive letter, and must not be empty
//!   after dropping `.` and empty components. Names and components longer than the
//!   kernel accepts are refused up front rather than failing half-way through extraction.
//!   Two entries that normalize to the same path are rejected, as is an entry below a
//!   file entry.
//! - **Symbolic links.** A symlink entry (unix mode `S_IFLNK`, target stored as its
//!   content) must have a relative target that stays inside the package. This is checked by
//!   simulating the kernel's path resolution over *all* the symlinks of the archive,
//!   component by component (with the kernel's limit of 40 links per lookup): a lexical
//!   check is not enough, since `s/up -> ..`, `d -> s/up`, `e -> d/..` makes `e` point to
//!   the parent of the package. Paths that leave the archive's known entries are treated
//!   lexically, which is stricter than the kernel. No entry may lie *below* a symlink
//!   entry (`l -> sub` plus `l/x`), so extraction never writes through a link.
//! - **Writing through links on disk.** [`extract`] only writes into an empty directory,
//!   creates all directories first, then all files with `O_CREAT|O_EXCL` (which never
//!   follows a symlink, not even a dangling one), and creates the symlinks last.
//! - **Modes.** Only the executable bit of a file's unix mode is kept: files become
//!   `0o644` or `0o755`, directories `0o755`. No setuid/setgid/sticky bits, no
//!   world-writable files, regardless of the process umask.
//! - **Encryption and exotic compression.** Encrypted entries and compression methods
//!   other than stored and deflated are rejected with a clear message.
//! - **Error messages.** [`PackageError`]'s `Display` text is returned to API users
//!   verbatim, so it never contains server paths; entry names in it are shortened and
//!   control characters escaped.
//!
//! Unix only: extraction relies on unix permissions and symlinks.

use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use zip::{CompressionMethod, ZipArchive};

/// The longest entry name accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_NAME_BYTES: usize = 4096;
/// The longest path component accepted, in bytes (Linux's `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The longest symlink target accepted, in bytes.
pub const MAX_SYMLINK_TARGET_BYTES: usize = 4095;
/// How many symlinks one path lookup may follow (Linux's limit).
pub const MAX_SYMLINK_FOLLOWS: u32 = 40;
/// Total resolution steps spent checking all the symlinks of one archive. Real packages
/// (e.g. `node_modules/.bin`) need a few steps per link; this only stops crafted archives
/// from burning CPU.
const SYMLINK_STEP_BUDGET: u64 = 1 << 22;
/// Entry names in error messages are cut to this many characters.
const MAX_SHOWN_NAME_CHARS: usize = 200;

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;
const FILE_MODE: u32 = 0o644;
const EXEC_MODE: u32 = 0o755;
const DIR_MODE: u32 = 0o755;

const CENTRAL_HEADER_SIG: [u8; 4] = *b"PK\x01\x02";
const CENTRAL_HEADER_LEN: usize = 46;
const EOCD_SIG: [u8; 4] = *b"PK\x05\x06";
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: [u8; 4] = *b"PK\x06\x07";
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: [u8; 4] = *b"PK\x06\x06";

/// Caps applied to one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum total of the decompressed bytes of all entries.
    pub max_unzipped_bytes: u64,
    /// Maximum number of entries (files, directories and symlinks) in the zip.
    pub max_entries: usize,
}

impl Default for Limits {
    /// Lambda's limits: 250 MB (262 144 000 bytes) unzipped, and 20 000 entries.
    fn default() -> Self {
        Self {
            max_unzipped_bytes: 262_144_000,
            max_entries: 20_000,
        }
    }
}

impl Limits {
    /// Directories implied by entry paths (`a/b/c.txt` without `a/` or `a/b/` entries)
    /// are created too; together with the entries they may not exceed this.
    pub fn max_paths(&self) -> usize {
        self.max_entries.saturating_mul(4)
    }
}

/// What [`inspect`] and [`extract`] learned about a valid package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackageInfo {
    /// SHA-256 of the zip file itself.
    pub sha256: [u8; 32],
    /// Size of the zip file in bytes.
    pub size: u64,
    /// Total decompressed size of all entries, as actually counted.
    pub unzipped_size: u64,
    /// Number of entries in the zip (files, directories and symlinks).
    pub entries: usize,
}

impl PackageInfo {
    /// Lowercase hex of [`PackageInfo::sha256`]: the package's name in the [`CodeStore`].
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Lambda's `CodeSha256` format: standard (padded) base64 of the raw digest.
    pub fn sha256_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sha256)
    }
}

/// Why a package was rejected.
///
/// Every variant except [`PackageError::Io`] is the uploader's fault; its `Display` text is
/// meant to be shown verbatim in an `InvalidParameterValueException` and contains no server
/// paths. [`PackageError::Io`] is a server-side failure during extraction.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Not a zip, truncated, corrupt compressed data, or a CRC mismatch. The string is a
    /// diagnostic for server logs only; it is not part of the message.
    #[error("Could not unzip uploaded file. Please check your file, then try to upload again.")]
    Corrupt(String),
    /// The decompressed entries add up to more than [`Limits::max_unzipped_bytes`].
    #[error("Unzipped size must be smaller than {max} bytes")]
    TooLarge { max: u64 },
    /// More than [`Limits::max_entries`] entries.
    #[error("The zip file has more than {max} entries")]
    TooManyEntries { max: usize },
    /// Entry paths imply more than [`Limits::max_paths`] files and directories.
    #[error(
        "The zip file creates more than {max} files and directories (counting parent directories that have no entry of their own)"
    )]
    TooManyPaths { max: usize },
    /// Absolute, `..`, backslash, NUL, drive letter or empty name.
    #[error(
        "Zip entry '{name}' has an unsafe path: entries must be relative and must not contain '..'"
    )]
    UnsafePath { name: String },
    /// Name longer than [`MAX_NAME_BYTES`] or a component longer than [`MAX_COMPONENT_BYTES`].
    #[error(
        "Zip entry '{name}' has a name that is too long: names are limited to 4096 bytes and each path component to 255 bytes"
    )]
    NameTooLong { name: String },
    /// Two entries with the same (normalized) path.
    #[error("The zip file contains more than one entry for '{name}'")]
    DuplicateEntry { name: String },
    /// An entry lies below a symlink entry of the archive.
    #[error(
        "Zip entry '{name}' is inside '{link}', which is a symbolic link: entries must not be placed below symbolic links"
    )]
    InsideSymlink { name: String, link: String },
    /// An entry lies below a regular file entry of the archive.
    #[error("Zip entry '{name}' is inside '{file}', which is a file, not a directory")]
    InsideFile { name: String, file: String },
    /// A symlink whose target is absolute or resolves outside the package.
    #[error("Zip entry '{name}' is a symbolic link that points outside the package")]
    SymlinkEscape { name: String },
    /// A symlink whose resolution follows more than [`MAX_SYMLINK_FOLLOWS`] links.
    #[error(
        "Zip entry '{name}' is a symbolic link that cannot be resolved: it is part of a loop or a chain of more than 40 links"
    )]
    SymlinkLoop { name: String },
    /// A symlink with an empty, non-UTF-8, NUL-containing or overlong target.
    #[error(
        "Zip entry '{name}' is a symbolic link with an invalid target: targets must be non-empty UTF-8 of at most 4095 bytes"
    )]
    InvalidSymlinkTarget { name: String },
    /// The symlinks are too numerous or convoluted to verify within the work budget.
    #[error("The zip file's symbolic links are too complex to verify")]
    SymlinksTooComplex,
    /// An encrypted (password-protected) entry.
    #[error("Zip entry '{name}' is encrypted: password-protected zip files are not supported")]
    Encrypted { name: String },
    /// A compression method other than stored or deflated.
    #[error(
        "Zip entry '{name}' uses an unsupported compression method: only stored and deflated entries are supported"
    )]
    UnsupportedCompression { name: String },
    /// Writing the extracted package failed (server error).
    #[error("internal error while extracting the code package")]
    Io(#[source] io::Error),
}

impl PackageError {
    /// `true` for failures of the server (extraction I/O), `false` for invalid uploads.
    pub fn is_server_error(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

/// Validate a zip completely without writing anything.
///
/// Every entry is decompressed to a counting sink (header sizes are not trusted), CRCs are
/// checked, names and symlinks are validated, and the limits are enforced while streaming.
pub fn inspect(zip: &[u8], limits: &Limits) -> Result<PackageInfo, PackageError> {
    let mut archive = open_archive(zip, limits)?;
    let mut counter = Counter::new(limits.max_unzipped_bytes);
    analyze(&mut archive, limits, &mut counter, true)?;
    Ok(package_info(zip, archive.len(), counter.total))
}

/// Safely extract a zip into `dest`, which must exist and be empty.
///
/// Performs the same checks as [`inspect`]. Names and symlinks are validated before
/// anything is written; data errors (CRC, size limit) can only be found while writing, so
/// on any error the contents of `dest` are removed again (best effort) and `dest` is left
/// empty. Directories are created first (`0o755`), then files with `O_CREAT|O_EXCL`
/// (`0o644`, or `0o755` when any executable bit is set in the zip), then symlinks.
pub fn extract(zip: &[u8], dest: &Path, limits: &Limits) -> Result<PackageInfo, PackageError> {
    let mut listing = fs::read_dir(dest).map_err(PackageError::Io)?;
    if listing.next().is_some() {
        return Err(PackageError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the extraction directory is not empty",
        )));
    }
    let result = extract_into(zip, dest, limits);
    if result.is_err() {
        // Best effort: the caller gets the original error either way.
        let _ = clear_dir(dest);
    }
    result
}

fn extract_into(zip: &[u8], dest: &Path, limits: &Limits) -> Result<PackageInfo, PackageError> {
    let mut archive = open_archive(zip, limits)?;
    let mut counter = Counter::new(limits.max_unzipped_bytes);
    let package = analyze(&mut archive, limits, &mut counter, false)?;

    package.tree.create_dirs(dest).map_err(PackageError::Io)?;

    for entry in &package.entries {
        let EntryKind::File { executable } = entry.kind else {
            continue;
        };
        let mode = if executable { EXEC_MODE } else { FILE_MODE };
        let path = dest.join(&entry.path);
        let mut file = open_entry(&mut archive, entry.index)?;
        // create_new = O_CREAT|O_EXCL: fails on any existing path, symlinks included.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(PackageError::Io)?;
        pump(&mut file, &mut counter, |chunk| {
            out.write_all(chunk).map_err(PackageError::Io)
        })?;
        // fchmod on the open handle: exact mode regardless of umask, no path lookup.
        out.set_permissions(Permissions::from_mode(mode))
            .map_err(PackageError::Io)?;
    }

    for entry in &package.entries {
        if let EntryKind::Symlink { target } = &entry.kind {
            std::os::unix::fs::symlink(target, dest.join(&entry.path)).map_err(PackageError::Io)?;
        }
    }

    Ok(package_info(zip, archive.len(), counter.total))
}

/// Remove everything inside `dir` (not `dir` itself). Never follows symlinks.
fn clear_dir(dir: &Path) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn package_info(zip: &[u8], entries: usize, unzipped_size: u64) -> PackageInfo {
    PackageInfo {
        sha256: Sha256::digest(zip).into(),
        size: zip.len() as u64,
        unzipped_size,
        entries,
    }
}

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

fn open_archive<'a>(zip: &'a [u8], limits: &Limits) -> Result<Archive<'a>, PackageError> {
    // Refuse huge entry counts before the zip reader allocates metadata for all of them.
    if declared_entry_count(zip).is_some_and(|n| n > limits.max_entries as u64) {
        return Err(PackageError::TooManyEntries {
            max: limits.max_entries,
        });
    }
    let archive =
        ZipArchive::new(Cursor::new(zip)).map_err(|e| PackageError::Corrupt(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(PackageError::TooManyEntries {
            max: limits.max_entries,
        });
    }
    check_central_directory(zip, &archive, limits)?;
    Ok(archive)
}

/// The entry count claimed by the last end-of-central-directory record (zip64 aware), if
/// one can be found. Only used to refuse absurd counts early.
fn declared_entry_count(zip: &[u8]) -> Option<u64> {
    let last = zip.len().checked_sub(EOCD_LEN)?;
    let first = last.saturating_sub(usize::from(u16::MAX));
    let eocd = (first..=last).rev().find(|&p| zip[p..p + 4] == EOCD_SIG)?;
    let count = u16::from_le_bytes([zip[eocd + 10], zip[eocd + 11]]);
    if count != u16::MAX {
        return Some(u64::from(count));
    }
    let locator = zip.get(eocd.checked_sub(ZIP64_LOCATOR_LEN)?..eocd)?;
    if locator[..4] != ZIP64_LOCATOR_SIG {
        return Some(u64::from(count));
    }
    let offset = usize::try_from(u64::from_le_bytes(locator[8..16].try_into().ok()?)).ok()?;
    let record = zip.get(offset..offset.checked_add(56)?)?;
    if record[..4] != ZIP64_EOCD_SIG {
        return None;
    }
    Some(u64::from_le_bytes(record[32..40].try_into().ok()?))
}

/// The zip reader keys entries by name and silently keeps only one of several entries
/// with the same name. Walk the central directory ourselves and compare.
fn check_central_directory(
    zip: &[u8],
    archive: &Archive<'_>,
    limits: &Limits,
) -> Result<(), PackageError> {
    let mut names: Vec<&[u8]> = Vec::with_capacity(archive.len());
    let mut pos = usize::try_from(archive.central_directory_start()).unwrap_or(usize::MAX);
    // One record more than the limit is enough to know something is off.
    while names.len() <= limits.max_entries {
        let Some(header) = zip.get(pos..pos.saturating_add(CENTRAL_HEADER_LEN)) else {
            break;
        };
        if header[..4] != CENTRAL_HEADER_SIG {
            break;
        }
        let field = |at: usize| usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
        let name_start = pos + CENTRAL_HEADER_LEN;
        let name_end = name_start + field(28);
        let Some(name) = zip.get(name_start..name_end) else {
            break;
        };
        names.push(name);
        pos = name_end + field(30) + field(32);
    }
    if names.len() == archive.len() {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(names.len());
    for name in names {
        if !seen.insert(name) {
            return Err(PackageError::DuplicateEntry {
                name: shown(&String::from_utf8_lossy(name)),
            });
        }
    }
    // Same names under different encodings, or an entry count that disagrees with the
    // records present: either way not a zip we want to interpret.
    Err(PackageError::Corrupt(
        "central directory disagrees with the entry count".into(),
    ))
}

/// Counts decompressed bytes against the size cap.
struct Counter {
    total: u64,
    max: u64,
}

impl Counter {
    fn new(max: u64) -> Self {
        Self { total: 0, max }
    }

    fn add(&mut self, n: usize) -> Result<(), PackageError> {
        self.total = self.total.saturating_add(n as u64);
        if self.total > self.max {
            return Err(PackageError::TooLarge { max: self.max });
        }
        Ok(())
    }
}

/// Decompress `reader` to its end (which is when the CRC is checked), counting every byte
/// and handing it to `sink`. Stops as soon as the size cap is passed.
fn pump(
    reader: &mut impl Read,
    counter: &mut Counter,
    mut sink: impl FnMut(&[u8]) -> Result<(), PackageError>,
) -> Result<(), PackageError> {
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PackageError::Corrupt(e.to_string())),
        };
        counter.add(n)?;
        sink(&buf[..n])?;
    }
}

/// An entry name for error messages: shortened, control characters escaped.
fn shown(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == MAX_SHOWN_NAME_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Split an entry name into its normalized components; the flag says whether the name
/// ends in `/` (a directory entry).
fn split_name<'n>(name: &'n str, show: &str) -> Result<(Vec<&'n str>, bool), PackageError> {
    let unsafe_path = || PackageError::UnsafePath { name: show.into() };
    if name.len() > MAX_NAME_BYTES {
        return Err(PackageError::NameTooLong { name: show.into() });
    }
    if name.starts_with('/') || name.contains(['\\', '\0']) || has_drive_prefix(name) {
        return Err(unsafe_path());
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(unsafe_path()),
            c if c.len() > MAX_COMPONENT_BYTES => {
                return Err(PackageError::NameTooLong { name: show.into() });
            }
            c => components.push(c),
        }
    }
    if components.is_empty() {
        return Err(unsafe_path());
    }
    Ok((components, name.ends_with('/')))
}

/// `C:...`: a Windows drive-relative or drive-absolute path.
fn has_drive_prefix(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

#[derive(Debug)]
enum EntryKind {
    Dir,
    File { executable: bool },
    Symlink { target: String },
}

struct Entry {
    /// Index in the archive.
    index: usize,
    /// Normalized relative path.
    path: PathBuf,
    kind: EntryKind,
}

struct Package {
    entries: Vec<Entry>,
    tree: Tree,
}

/// Validate every entry. Directory and symlink entries are always decompressed (symlink
/// targets are needed for the checks); file entries only if `read_files`, otherwise the
/// caller decompresses them itself while extracting.
fn analyze(
    archive: &mut Archive<'_>,
    limits: &Limits,
    counter: &mut Counter,
    read_files: bool,
) -> Result<Package, PackageError> {
    let mut tree = Tree::new(limits.max_paths());
    let mut entries = Vec::with_capacity(archive.len());
    let mut symlink_nodes = Vec::new();
    let mut names = Vec::with_capacity(archive.len());

    for index in 0..archive.len() {
        let name = archive.name_for_index(index).unwrap_or_default().to_owned();
        let show = shown(&name);
        let (components, dir_syntax) = split_name(&name, &show)?;

        let mode = {
            let raw = archive
                .by_index_raw(index)
                .map_err(|e| PackageError::Corrupt(e.to_string()))?;
            if raw.encrypted() {
                return Err(PackageError::Encrypted { name: show });
            }
            if !matches!(
                raw.compression(),
                CompressionMethod::Stored | CompressionMethod::Deflated
            ) {
                return Err(PackageError::UnsupportedCompression { name: show });
            }
            raw.unix_mode().unwrap_or(0)
        };

        let kind = if dir_syntax || mode & S_IFMT == S_IFDIR {
            // Directory entries normally have no data, but whatever is there is still
            // decompressed, counted and CRC-checked.
            pump(&mut open_entry(archive, index)?, counter, |_| Ok(()))?;
            EntryKind::Dir
        } else if mode & S_IFMT == S_IFLNK {
            let target = read_symlink_target(&mut open_entry(archive, index)?, counter, &show)?;
            EntryKind::Symlink { target }
        } else {
            if read_files {
                pump(&mut open_entry(archive, index)?, counter, |_| Ok(()))?;
            }
            EntryKind::File {
                executable: mode & 0o111 != 0,
            }
        };

        let node_kind = match &kind {
            EntryKind::Dir => NodeKind::Dir,
            EntryKind::File { .. } => NodeKind::File,
            EntryKind::Symlink { target } => NodeKind::Symlink {
                target: target.clone(),
            },
        };
        let node = tree
            .insert(&components, node_kind, index)
            .map_err(|conflict| conflict.into_error(index, &show, &names, limits))?;
        if matches!(kind, EntryKind::Symlink { .. }) {
            symlink_nodes.push((node, index));
        }
        entries.push(Entry {
            index,
            path: components.iter().collect(),
            kind,
        });
        names.push(show);
    }

    let mut budget = SYMLINK_STEP_BUDGET;
    for (node, index) in symlink_nodes {
        tree.check_symlink(node, &mut budget).map_err(|problem| {
            let name = names[index].clone();
            match problem {
                SymlinkProblem::Escape => PackageError::SymlinkEscape { name },
                SymlinkProblem::Loop => PackageError::SymlinkLoop { name },
                SymlinkProblem::TooComplex => PackageError::SymlinksTooComplex,
            }
        })?;
    }

    Ok(Package { entries, tree })
}

fn open_entry<'a, 'z>(
    archive: &'a mut Archive<'z>,
    index: usize,
) -> Result<zip::read::ZipFile<'a, Cursor<&'z [u8]>>, PackageError> {
    archive
        .by_index(index)
        .map_err(|e| PackageError::Corrupt(e.to_string()))
}

/// Read a symlink entry's content (its target) and check that it is usable and relative.
fn read_symlink_target(
    file: &mut impl Read,
    counter: &mut Counter,
    show: &str,
) -> Result<String, PackageError> {
    let invalid = || PackageError::InvalidSymlinkTarget { name: show.into() };
    let mut target = Vec::new();
    pump(file, counter, |chunk| {
        if target.len() + chunk.len() > MAX_SYMLINK_TARGET_BYTES {
            return Err(invalid());
        }
        target.extend_from_slice(chunk);
        Ok(())
    })?;
    let target = String::from_utf8(target).map_err(|_| invalid())?;
    if target.is_empty() || target.contains('\0') {
        return Err(invalid());
    }
    if target.starts_with('/') {
        return Err(PackageError::SymlinkEscape { name: show.into() });
    }
    Ok(target)
}

const ROOT: usize = 0;

/// The package's directory tree, with one node per path (explicit entries and the
/// directories they imply).
struct Tree {
    nodes: Vec<Node>,
    max_nodes: usize,
}

struct Node {
    name: Box<str>,
    parent: usize,
    kind: NodeKind,
    /// Archive index of the entry that created the node (for implicit directories: the
    /// first entry below it).
    entry: usize,
    children: HashMap<Box<str>, usize>,
}

#[derive(Debug)]
enum NodeKind {
    Root,
    ImplicitDir,
    Dir,
    File,
    Symlink { target: String },
}

impl NodeKind {
    fn is_dir(&self) -> bool {
        matches!(self, Self::Root | Self::ImplicitDir | Self::Dir)
    }
}

#[derive(Debug)]
enum Conflict {
    /// The new entry is at the same path as an earlier one.
    Duplicate,
    /// Entry `inner` lies below entry `outer`, a file or symlink.
    Below {
        inner: usize,
        outer: usize,
        outer_is_symlink: bool,
    },
    TooManyNodes,
}

impl Conflict {
    fn into_error(
        self,
        index: usize,
        show: &str,
        names: &[String],
        limits: &Limits,
    ) -> PackageError {
        let name_of = |i: usize| {
            if i == index {
                show.to_owned()
            } else {
                names[i].clone()
            }
        };
        match self {
            Self::Duplicate => PackageError::DuplicateEntry { name: show.into() },
            Self::Below {
                inner,
                outer,
                outer_is_symlink: true,
            } => PackageError::InsideSymlink {
                name: name_of(inner),
                link: name_of(outer),
            },
            Self::Below { inner, outer, .. } => PackageError::InsideFile {
                name: name_of(inner),
                file: name_of(outer),
            },
            Self::TooManyNodes => PackageError::TooManyPaths {
                max: limits.max_paths(),
            },
        }
    }
}

#[derive(Debug)]
enum SymlinkProblem {
    Escape,
    Loop,
    TooComplex,
}

impl Tree {
    fn new(max_nodes: usize) -> Self {
        let root = Node {
            name: "".into(),
            parent: ROOT,
            kind: NodeKind::Root,
            entry: usize::MAX,
            children: HashMap::new(),
        };
        Self {
            nodes: vec![root],
            max_nodes,
        }
    }

    /// Add archive entry `entry` at `components`, creating the directories it implies.
    fn insert(
        &mut self,
        components: &[&str],
        kind: NodeKind,
        entry: usize,
    ) -> Result<usize, Conflict> {
        let Some((&leaf, parents)) = components.split_last() else {
            // The root itself; `split_name` never produces this.
            return Err(Conflict::Duplicate);
        };
        let mut current = ROOT;
        for &component in parents {
            current = match self.nodes[current].children.get(component) {
                Some(&id) => {
                    let node = &self.nodes[id];
                    if !node.kind.is_dir() {
                        return Err(Conflict::Below {
                            inner: entry,
                            outer: node.entry,
                            outer_is_symlink: matches!(node.kind, NodeKind::Symlink { .. }),
                        });
                    }
                    id
                }
                None => self.add_node(current, component, NodeKind::ImplicitDir, entry)?,
            };
        }
        let Some(&id) = self.nodes[current].children.get(leaf) else {
            return self.add_node(current, leaf, kind, entry);
        };
        let existing = &mut self.nodes[id];
        match (&existing.kind, &kind) {
            (NodeKind::ImplicitDir, NodeKind::Dir) => {
                existing.kind = NodeKind::Dir;
                existing.entry = entry;
                Ok(id)
            }
            // Earlier entries were placed below what turns out to be a file or symlink.
            (NodeKind::ImplicitDir, _) => Err(Conflict::Below {
                inner: existing.entry,
                outer: entry,
                outer_is_symlink: matches!(kind, NodeKind::Symlink { .. }),
            }),
            _ => Err(Conflict::Duplicate),
        }
    }

    fn add_node(
        &mut self,
        parent: usize,
        name: &str,
        kind: NodeKind,
        entry: usize,
    ) -> Result<usize, Conflict> {
        // The root is not counted.
        if self.nodes.len() > self.max_nodes {
            return Err(Conflict::TooManyNodes);
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            name: name.into(),
            parent,
            kind,
            entry,
            children: HashMap::new(),
        });
        self.nodes[parent].children.insert(name.into(), id);
        Ok(id)
    }

    /// Resolve the symlink at node `link` the way the kernel would once the package is
    /// extracted, following every symlink of the archive on the way, and fail if the
    /// resolution ever climbs above the package root.
    ///
    /// The position is the deepest node of the archive reached plus a count of components
    /// below it that the archive does not contain; those are handled lexically (the kernel
    /// would fail the lookup instead, so this is only stricter).
    fn check_symlink(&self, link: usize, budget: &mut u64) -> Result<(), SymlinkProblem> {
        let NodeKind::Symlink { target } = &self.nodes[link].kind else {
            return Ok(());
        };
        let mut node = self.nodes[link].parent;
        let mut unknown_depth = 0usize;
        // Accessing the link itself is the first follow.
        let mut followed = 1u32;
        let mut pending: Vec<&str> = target.split('/').rev().collect();
        while let Some(component) = pending.pop() {
            *budget = budget.checked_sub(1).ok_or(SymlinkProblem::TooComplex)?;
            match component {
                "" | "." => {}
                ".." if unknown_depth > 0 => unknown_depth -= 1,
                ".." if node == ROOT => return Err(SymlinkProblem::Escape),
                ".." => node = self.nodes[node].parent,
                _ if unknown_depth > 0 => unknown_depth += 1,
                name => match self.nodes[node].children.get(name) {
                    None => unknown_depth = 1,
                    Some(&child) => match &self.nodes[child].kind {
                        NodeKind::Symlink { target } => {
                            followed += 1;
                            if followed > MAX_SYMLINK_FOLLOWS {
                                return Err(SymlinkProblem::Loop);
                            }
                            if target.starts_with('/') {
                                return Err(SymlinkProblem::Escape);
                            }
                            // Continue with the link's target, relative to `node`, which
                            // is the directory containing the link.
                            pending.extend(target.split('/').rev());
                        }
                        _ => node = child,
                    },
                },
            }
        }
        Ok(())
    }

    /// Create every directory of the tree below `dest`, parents first.
    ///
    /// Runs before any file or symlink is created, so no path used here can contain a
    /// symlink (`mkdir` itself never follows one).
    fn create_dirs(&self, dest: &Path) -> io::Result<()> {
        let mut path = dest.to_path_buf();
        let mut stack = vec![self.dir_children(ROOT)];
        while let Some(pending) = stack.last_mut() {
            if let Some(child) = pending.pop() {
                path.push(&*self.nodes[child].name);
                DirBuilder::new().mode(DIR_MODE).create(&path)?;
                fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))?;
                stack.push(self.dir_children(child));
            } else {
                stack.pop();
                if !stack.is_empty() {
                    path.pop();
                }
            }
        }
        Ok(())
    }

    fn dir_children(&self, id: usize) -> Vec<usize> {
        self.nodes[id]
            .children
            .values()
            .copied()
            .filter(|&child| self.nodes[child].kind.is_dir())
            .collect()
    }
}

/// Content-addressed store of zip files: `<root>/<sha256 hex>.zip`.
///
/// Files are written under a temporary name (`.tmp-…`) in the same directory, fsynced,
/// renamed into place and the directory fsynced, so a stored package is either complete
/// or absent after a crash.
#[derive(Debug, Clone)]
pub struct CodeStore {
    root: PathBuf,
}

const TEMP_PREFIX: &str = ".tmp-";
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CodeStore {
    /// Open (creating it if needed) the store directory `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the package with this hash is (or would be) stored.
    ///
    /// `sha256_hex` must be 64 lowercase hex digits, as produced by
    /// [`PackageInfo::sha256_hex`] or [`CodeStore::list`]; other strings are not checked
    /// here (debug builds panic), while [`CodeStore::read`] and [`CodeStore::remove`]
    /// refuse them.
    pub fn path(&self, sha256_hex: &str) -> PathBuf {
        debug_assert!(is_sha256_hex(sha256_hex), "invalid package hash");
        self.root.join(format!("{sha256_hex}.zip"))
    }

    /// Durably store `zip`, whose [`PackageInfo`] (from [`inspect`]) is `info`.
    /// Storing a package that is already present is a no-op. Fails with
    /// [`io::ErrorKind::InvalidInput`] if `info` does not describe `zip`.
    pub fn put(&self, zip: &[u8], info: &PackageInfo) -> io::Result<()> {
        let digest: [u8; 32] = Sha256::digest(zip).into();
        if digest != info.sha256 || zip.len() as u64 != info.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "package info does not match the zip",
            ));
        }
        let hex = info.sha256_hex();
        let dest = self.path(&hex);
        if fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == info.size) {
            return Ok(());
        }
        let temp = self.root.join(format!(
            "{TEMP_PREFIX}{hex}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.write_durably(&temp, zip, &dest);
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn write_durably(&self, temp: &Path, zip: &[u8], dest: &Path) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(temp)?;
        file.write_all(zip)?;
        file.sync_all()?;
        drop(file);
        fs::rename(temp, dest)?;
        File::open(&self.root)?.sync_all()
    }

    /// Whether the package with this hash is stored.
    pub fn contains(&self, sha256_hex: &str) -> io::Result<bool> {
        check_hash(sha256_hex)?;
        self.path(sha256_hex).try_exists()
    }

    /// The stored zip with this hash.
    pub fn read(&self, sha256_hex: &str) -> io::Result<Vec<u8>> {
        check_hash(sha256_hex)?;
        fs::read(self.path(sha256_hex))
    }

    /// Delete the stored zip with this hash; deleting a missing one is not an error.
    pub fn remove(&self, sha256_hex: &str) -> io::Result<()> {
        check_hash(sha256_hex)?;
        match fs::remove_file(self.path(sha256_hex)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The hashes of all stored zips, sorted (for garbage collection). Temporary files and
    /// anything else that is not `<sha256 hex>.zip` are ignored.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut hashes = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".zip")) else {
                continue;
            };
            if is_sha256_hex(hash) {
                hashes.push(hash.to_owned());
            }
        }
        hashes.sort_unstable();
        Ok(hashes)
    }

    /// Delete temporary files left behind by a crash during [`CodeStore::put`]; returns
    /// how many were removed. Only call this while no `put` is running (e.g. at startup).
    pub fn remove_temp_files(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX));
            if is_temp && entry.file_type()?.is_file() {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_hash(s: &str) -> io::Result<()> {
    if is_sha256_hex(s) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid package hash: expected 64 lowercase hex digits",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Instant;
    use zip::ZipWriter;
    use zip::write::SimpleFileOptions;

    const UNZIP_MESSAGE: &str =
        "Could not unzip uploaded file. Please check your file, then try to upload again.";

    fn small_limits() -> Limits {
        Limits {
            max_unzipped_bytes: 1_000_000,
            max_entries: 100,
        }
    }

    enum Item<'a> {
        File(&'a [u8], u32),
        Dir,
        Link(&'a str),
    }

    /// A well-formed zip built with the zip crate's writer.
    fn build(items: &[(&str, Item<'_>)]) -> Vec<u8> {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, item) in items {
            match item {
                Item::File(data, mode) => {
                    let options = SimpleFileOptions::default()
                        .compression_method(CompressionMethod::Deflated)
                        .unix_permissions(*mode);
                    writer.start_file(*name, options).unwrap();
                    writer.write_all(data).unwrap();
                }
                Item::Dir => writer
                    .add_directory(*name, SimpleFileOptions::default())
                    .unwrap(),
                Item::Link(target) => writer
                    .add_symlink(*name, *target, SimpleFileOptions::default())
                    .unwrap(),
            }
        }
        writer.finish().unwrap().into_inner()
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// One entry of a hand-assembled zip, with every header field under test control.
    struct Raw {
        name: Vec<u8>,
        method: u16,
        flags: u16,
        crc: u32,
        size: u32,
        mode: u32,
        data: Vec<u8>,
    }

    impl Raw {
        fn stored(name: impl Into<Vec<u8>>, content: &[u8]) -> Self {
            Self {
                name: name.into(),
                method: 0,
                flags: 0,
                crc: crc32(content),
                size: content.len() as u32,
                mode: 0o100_644,
                data: content.to_vec(),
            }
        }
    }

    fn raw_zip(entries: &[Raw]) -> Vec<u8> {
        fn u16le(out: &mut Vec<u8>, v: u16) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        fn u32le(out: &mut Vec<u8>, v: u32) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut central = Vec::new();
        for e in entries {
            let offset = out.len() as u32;
            out.extend_from_slice(b"PK\x03\x04");
            for v in [20, e.flags, e.method, 0, 0x21] {
                u16le(&mut out, v);
            }
            for v in [e.crc, e.data.len() as u32, e.size] {
                u32le(&mut out, v);
            }
            u16le(&mut out, e.name.len() as u16);
            u16le(&mut out, 0);
            out.extend_from_slice(&e.name);
            out.extend_from_slice(&e.data);

            central.extend_from_slice(b"PK\x01\x02");
            for v in [0x0314, 20, e.flags, e.method, 0, 0x21] {
                u16le(&mut central, v);
            }
            for v in [e.crc, e.data.len() as u32, e.size] {
                u32le(&mut central, v);
            }
            for v in [e.name.len() as u16, 0, 0, 0, 0] {
                u16le(&mut central, v);
            }
            u32le(&mut central, e.mode << 16);
            u32le(&mut central, offset);
            central.extend_from_slice(&e.name);
        }
        let central_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06");
        for v in [0, 0, entries.len() as u16, entries.len() as u16] {
            u16le(&mut out, v);
        }
        u32le(&mut out, central.len() as u32);
        u32le(&mut out, central_offset);
        u16le(&mut out, 0);
        out
    }

    /// A raw deflate stream (one fixed-Huffman block) that inflates to
    /// `1 + 258 * matches` zero bytes: a literal 0, then `matches` copies of
    /// <length 258, distance 1>. Built directly, so huge bombs cost nothing to make.
    fn deflate_zeros(matches: u64) -> Vec<u8> {
        struct Bits {
            out: Vec<u8>,
            acc: u64,
            len: u32,
        }
        impl Bits {
            fn put(&mut self, value: u64, count: u32) {
                self.acc |= value << self.len;
                self.len += count;
                while self.len >= 8 {
                    self.out.push(self.acc as u8);
                    self.acc >>= 8;
                    self.len -= 8;
                }
            }
            /// Huffman codes are stored most significant bit first.
            fn code(&mut self, code: u64, count: u32) {
                let reversed = (0..count).fold(0, |r, i| (r << 1) | ((code >> i) & 1));
                self.put(reversed, count);
            }
        }
        let mut bits = Bits {
            out: Vec::with_capacity((matches * 13 / 8 + 16) as usize),
            acc: 0,
            len: 0,
        };
        bits.put(1, 1); // BFINAL
        bits.put(1, 2); // BTYPE = fixed Huffman
        bits.code(0x30, 8); // literal 0
        for _ in 0..matches {
            bits.code(0xC5, 8); // length code 285 = 258
            bits.code(0, 5); // distance code 0 = 1
        }
        bits.code(0, 7); // end of block
        bits.put(0, 7);
        bits.out
    }

    fn unix_mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn assert_empty(dir: &Path) {
        assert_eq!(
            fs::read_dir(dir).unwrap().count(),
            0,
            "{dir:?} is not empty"
        );
    }

    #[test]
    fn normal_package_round_trips_with_modes() {
        let zip = build(&[
            ("bin/", Item::Dir),
            ("bin/run", Item::File(b"#!/bin/sh\necho hi\n", 0o755)),
            ("bin/owner-only-exec", Item::File(b"x", 0o700)),
            ("bin/setuid", Item::File(b"x", 0o4755)),
            ("private/", Item::Dir),
            ("lib/a/b/c.txt", Item::File(b"hello", 0o644)),
            ("lib/a/world-writable", Item::File(b"w", 0o666)),
            ("./dot/./x.txt", Item::File(b"dot", 0o600)),
            ("current", Item::Link("lib/a")),
            ("lib/a/b/up", Item::Link("../../../bin/run")),
            (
                "handler.js",
                Item::File(b"exports.handler = async () => 1;", 0o644),
            ),
        ]);
        let info = inspect(&zip, &Limits::default()).unwrap();
        assert_eq!(info.entries, 11);
        assert_eq!(info.size, zip.len() as u64);
        let content_len = 18 + 1 + 1 + 5 + 1 + 3 + 32;
        let link_len = "lib/a".len() + "../../../bin/run".len();
        assert_eq!(info.unzipped_size, (content_len + link_len) as u64);

        let dir = tempfile::tempdir().unwrap();
        let extracted = extract(&zip, dir.path(), &Limits::default()).unwrap();
        assert_eq!(extracted, info);

        let root = dir.path();
        assert_eq!(
            fs::read(root.join("bin/run")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(fs::read(root.join("lib/a/b/c.txt")).unwrap(), b"hello");
        assert_eq!(fs::read(root.join("dot/x.txt")).unwrap(), b"dot");
        assert_eq!(unix_mode(&root.join("bin/run")), 0o755);
        assert_eq!(unix_mode(&root.join("bin/owner-only-exec")), 0o755);
        assert_eq!(unix_mode(&root.join("bin/setuid")), 0o755);
        assert_eq!(unix_mode(&root.join("lib/a/b/c.txt")), 0o644);
        assert_eq!(unix_mode(&root.join("lib/a/world-writable")), 0o644);
        assert_eq!(unix_mode(&root.join("dot/x.txt")), 0o644);
        for d in ["bin", "private", "lib", "lib/a", "lib/a/b", "dot"] {
            let meta = fs::symlink_metadata(root.join(d)).unwrap();
            assert!(meta.is_dir(), "{d}");
            assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{d}");
        }
        assert_eq!(
            fs::read_link(root.join("current")).unwrap(),
            Path::new("lib/a")
        );
        assert_eq!(fs::read(root.join("current/b/c.txt")).unwrap(), b"hello");
        assert_eq!(
            fs::read(root.join("lib/a/b/up")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
    }

    #[test]
    fn sha256_formats_match_sha2() {
        let zip = build(&[("a.txt", Item::File(b"abc", 0o644))]);
        let info = inspect(&zip, &Limits::default()).unwrap();
        let digest = Sha256::digest(&zip);
        assert_eq!(info.sha256, <[u8; 32]>::from(digest));
        assert_eq!(info.sha256_hex(), hex::encode(digest));
        assert_eq!(
            info.sha256_base64(),
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert_eq!(info.sha256_base64().len(), 44);
    }

    #[test]
    fn default_limits_are_lambdas() {
        let limits = Limits::default();
        assert_eq!(limits.max_unzipped_bytes, 262_144_000);
        assert_eq!(limits.max_entries, 20_000);
    }

    #[test]
    fn empty_archive_is_valid() {
        let zip = build(&[]);
        let info = inspect(&zip, &Limits::default()).unwrap();
        assert_eq!((info.entries, info.unzipped_size), (0, 0));
    }

    #[test]
    fn zip_slip_names_are_rejected() {
        let names: &[&[u8]] = &[
            b"../evil",
            b"a/../../evil",
            b"a/../b",
            b"..",
            b"/etc/passwd",
            b"//server/share",
            b"..\\evil",
            b"\\evil",
            b"a\\b",
            b"C:/evil",
            b"c:evil",
            b"a\0b",
            b"",
            b"./",
            b"/",
            b"././/.",
        ];
        for name in names {
            let zip = raw_zip(&[
                Raw::stored(b"ok.txt".to_vec(), b"ok"),
                Raw::stored(*name, b"x"),
            ]);
            let err = inspect(&zip, &small_limits()).unwrap_err();
            assert!(
                matches!(&err, PackageError::UnsafePath { .. }),
                "{:?}: {err:?}",
                String::from_utf8_lossy(name)
            );
            assert!(!err.is_server_error());

            let dir = tempfile::tempdir().unwrap();
            let err = extract(&zip, dir.path(), &small_limits()).unwrap_err();
            assert!(matches!(err, PackageError::UnsafePath { .. }));
            assert_empty(dir.path());
        }
    }

    #[test]
    fn unsafe_path_message_names_the_entry() {
        let zip = raw_zip(&[Raw::stored("x/../../etc", b"x")]);
        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Zip entry 'x/../../etc' has an unsafe path: entries must be relative and must not contain '..'"
        );
        let zip = raw_zip(&[Raw::stored("..\\evil", b"x")]);
        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Zip entry '..\\evil' has an unsafe path: entries must be relative and must not contain '..'"
        );
        // Control characters are escaped, long names shortened.
        let zip = raw_zip(&[Raw::stored("a\n/../b", b"x")]);
        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert!(
            err.to_string().starts_with("Zip entry 'a\\n/../b'"),
            "{err}"
        );
        let long = format!("{}/../x", "a".repeat(250));
        let zip = raw_zip(&[Raw::stored(long, b"x")]);
        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("'{}...'", "a".repeat(200))),
            "{err}"
        );
    }

    #[test]
    fn overlong_names_are_rejected() {
        let component = "a".repeat(256);
        let zip = build(&[(component.as_str(), Item::File(b"x", 0o644))]);
        assert!(matches!(
            inspect(&zip, &small_limits()),
            Err(PackageError::NameTooLong { .. })
        ));
        let path = ["abcdefgh"; 460].join("/");
        let zip = build(&[(path.as_str(), Item::File(b"x", 0o644))]);
        assert!(matches!(
            inspect(&zip, &Limits::default()),
            Err(PackageError::NameTooLong { .. })
        ));
    }

    #[test]
    fn symlink_escapes_are_rejected() {
        let cases: Vec<Vec<(&str, Item<'_>)>> = vec![
            vec![("link", Item::Link("/etc/passwd"))],
            vec![("link", Item::Link("../x"))],
            vec![("link", Item::Link(".."))],
            vec![("a/b/link", Item::Link("../../../x"))],
            vec![("link", Item::Link("a/../../x"))],
            vec![("link", Item::Link("nonexistent/../../x"))],
            vec![
                ("f", Item::File(b"x", 0o644)),
                ("link", Item::Link("f/../..")),
            ],
            // Each link is harmless alone; together `e` is the package's parent.
            vec![
                ("s/", Item::Dir),
                ("s/up", Item::Link("..")),
                ("d", Item::Link("s/up")),
                ("e", Item::Link("d/..")),
            ],
            // The same, with the escaping link listed first.
            vec![
                ("e", Item::Link("d/../x")),
                ("d", Item::Link("s/up")),
                ("s/up", Item::Link("..")),
            ],
            // A link into a link that is absolute.
            vec![("abs", Item::Link("/")), ("rel", Item::Link("abs"))],
        ];
        for items in cases {
            let zip = build(&items);
            let err = inspect(&zip, &small_limits()).unwrap_err();
            assert!(
                matches!(err, PackageError::SymlinkEscape { .. }),
                "{:?}: {err:?}",
                items.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            );
            let dir = tempfile::tempdir().unwrap();
            assert!(extract(&zip, dir.path(), &small_limits()).is_err());
            assert_empty(dir.path());
        }

        let zip = build(&[
            ("s/", Item::Dir),
            ("s/up", Item::Link("..")),
            ("e", Item::Link("s/up/..")),
        ]);
        assert_eq!(
            inspect(&zip, &small_limits()).unwrap_err().to_string(),
            "Zip entry 'e' is a symbolic link that points outside the package"
        );
    }

    #[test]
    fn symlinks_inside_the_package_are_accepted() {
        let zip = build(&[
            ("node_modules/typescript/bin/tsc", Item::File(b"tsc", 0o755)),
            ("node_modules/.bin/tsc", Item::Link("../typescript/bin/tsc")),
            ("self", Item::Link(".")),
            ("s/up", Item::Link("..")),
            ("d", Item::Link("s/up")),
            ("e", Item::Link("d/s/up/node_modules")),
            ("dangling", Item::Link("does/not/exist")),
            (
                "a/b/c",
                Item::Link("../../a/b/../../node_modules/./.bin//tsc"),
            ),
        ]);
        inspect(&zip, &small_limits()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract(&zip, dir.path(), &small_limits()).unwrap();
        assert_eq!(
            fs::read(dir.path().join("e/.bin/tsc")).unwrap(),
            b"tsc".to_vec()
        );
        assert_eq!(fs::read(dir.path().join("a/b/c")).unwrap(), b"tsc".to_vec());
    }

    #[test]
    fn symlink_loops_and_bad_targets_are_rejected() {
        let zip = build(&[("l1", Item::Link("l2")), ("l2", Item::Link("l1"))]);
        assert!(matches!(
            inspect(&zip, &small_limits()),
            Err(PackageError::SymlinkLoop { .. })
        ));
        let zip = build(&[("self", Item::Link("self/x"))]);
        assert!(matches!(
            inspect(&zip, &small_limits()),
            Err(PackageError::SymlinkLoop { .. })
        ));

        // A chain of exactly 40 links resolves; 41 do not.
        for (len, ok) in [(40, true), (41, false)] {
            let names: Vec<String> = (0..=len).map(|i| format!("l{i}")).collect();
            let mut items: Vec<(&str, Item<'_>)> = (0..len)
                .map(|i| (names[i].as_str(), Item::Link(names[i + 1].as_str())))
                .collect();
            items.push((names[len].as_str(), Item::File(b"end", 0o644)));
            let zip = build(&items);
            assert_eq!(inspect(&zip, &small_limits()).is_ok(), ok, "{len}");
        }

        for target in ["", "a\0b"] {
            let zip = build(&[("l", Item::Link(target))]);
            assert!(matches!(
                inspect(&zip, &small_limits()),
                Err(PackageError::InvalidSymlinkTarget { .. })
            ));
        }
        let long = "a/".repeat(2048);
        let zip = build(&[("l", Item::Link(&long))]);
        assert!(matches!(
            inspect(&zip, &small_limits()),
            Err(PackageError::InvalidSymlinkTarget { .. })
        ));
    }

    #[test]
    fn symlink_checking_has_a_work_budget() {
        let mut tree = Tree::new(10);
        let target = "./".repeat(20) + "x";
        let link = tree
            .insert(&["l"], NodeKind::Symlink { target }, 0)
            .unwrap();
        let mut budget = 10;
        assert!(matches!(
            tree.check_symlink(link, &mut budget),
            Err(SymlinkProblem::TooComplex)
        ));
        let mut budget = 100;
        assert!(tree.check_symlink(link, &mut budget).is_ok());
        assert_eq!(budget, 100 - 21);
    }

    #[test]
    fn a_package_at_the_entry_limit_is_checked_quickly() {
        let limits = Limits::default();
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default();
        for i in 0..limits.max_entries / 2 {
            let dir = format!("node_modules/pkg{}/lib{}", i % 500, i % 7);
            writer
                .start_file(format!("{dir}/file{i}.js"), options)
                .unwrap();
            writer.write_all(b"module.exports = 1;\n").unwrap();
            writer
                .add_symlink(
                    format!("node_modules/.bin/b{i}"),
                    format!("../../{dir}/file{i}.js"),
                    options,
                )
                .unwrap();
        }
        let zip = writer.finish().unwrap().into_inner();
        let started = Instant::now();
        let info = inspect(&zip, &limits).unwrap();
        assert_eq!(info.entries, limits.max_entries);
        let elapsed = started.elapsed();
        eprintln!("{} entries inspected in {elapsed:?}", info.entries);
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        extract(&zip, dir.path(), &limits).unwrap();
        eprintln!(
            "{} entries extracted in {:?}",
            info.entries,
            started.elapsed()
        );
    }

    #[test]
    fn entries_below_a_symlink_are_rejected() {
        for items in [
            vec![
                ("sub/", Item::Dir),
                ("l", Item::Link("sub")),
                ("l/x", Item::File(b"x", 0o644)),
            ],
            vec![
                ("l/x", Item::File(b"x", 0o644)),
                ("l", Item::Link("sub")),
                ("sub/", Item::Dir),
            ],
            vec![("l", Item::Link("sub")), ("l/", Item::Dir)],
            vec![
                ("l", Item::Link("/tmp")),
                ("l/deep/x", Item::File(b"x", 0o644)),
            ],
        ] {
            let zip = build(&items);
            let err = inspect(&zip, &small_limits()).unwrap_err();
            assert!(
                matches!(
                    err,
                    PackageError::InsideSymlink { .. }
                        | PackageError::DuplicateEntry { .. }
                        | PackageError::SymlinkEscape { .. }
                ),
                "{err:?}"
            );
            let dir = tempfile::tempdir().unwrap();
            assert!(extract(&zip, dir.path(), &small_limits()).is_err());
            assert_empty(dir.path());
        }
        let zip = build(&[
            ("sub/", Item::Dir),
            ("l", Item::Link("sub")),
            ("l/x", Item::File(b"x", 0o644)),
        ]);
        assert_eq!(
            inspect(&zip, &small_limits()).unwrap_err().to_string(),
            "Zip entry 'l/x' is inside 'l', which is a symbolic link: entries must not be placed below symbolic links"
        );
        let zip = build(&[("l/x", Item::File(b"x", 0o644)), ("l", Item::Link("sub"))]);
        assert!(matches!(
            inspect(&zip, &small_limits()),
            Err(PackageError::InsideSymlink { name, link }) if name == "l/x" && link == "l"
        ));
    }

    #[test]
    fn entries_below_a_file_are_rejected() {
        for items in [
            vec![
                ("a", Item::File(b"x", 0o644)),
                ("a/b", Item::File(b"y", 0o644)),
            ],
            vec![
                ("a/b/c", Item::File(b"y", 0o644)),
                ("a", Item::File(b"x", 0o644)),
            ],
        ] {
            let zip = build(&items);
            assert!(matches!(
                inspect(&zip, &small_limits()),
                Err(PackageError::InsideFile { .. })
            ));
        }
    }

    #[test]
    fn duplicate_entries_are_rejected() {
        // The zip reader silently keeps one of two identical names.
        let zip = raw_zip(&[Raw::stored("a.txt", b"one"), Raw::stored("a.txt", b"two")]);
        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The zip file contains more than one entry for 'a.txt'"
        );
        for (first, second) in [("a/b", "a//b"), ("d/", "d"), ("x", "./x"), ("d/", "d//")] {
            let zip = raw_zip(&[Raw::stored(first, b""), Raw::stored(second, b"")]);
            assert!(
                matches!(
                    inspect(&zip, &small_limits()),
                    Err(PackageError::DuplicateEntry { .. })
                ),
                "{first} {second}"
            );
        }
        // An explicit directory after files inside it is fine.
        let zip = build(&[("d/x", Item::File(b"x", 0o644)), ("d/", Item::Dir)]);
        inspect(&zip, &small_limits()).unwrap();
    }

    #[test]
    fn zip_bomb_is_stopped_at_the_limit() {
        // 10 MB of zeros deflates to about 10 KB.
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file("zeros", SimpleFileOptions::default())
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..10 {
            writer.write_all(&chunk).unwrap();
        }
        let zip = writer.finish().unwrap().into_inner();
        assert!(zip.len() < 100_000);

        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unzipped size must be smaller than 1000000 bytes"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = extract(&zip, dir.path(), &small_limits()).unwrap_err();
        assert!(matches!(err, PackageError::TooLarge { max: 1_000_000 }));
        assert_empty(dir.path());

        let roomy = Limits {
            max_unzipped_bytes: 10 << 20,
            ..small_limits()
        };
        assert_eq!(inspect(&zip, &roomy).unwrap().unzipped_size, 10 << 20);
    }

    #[test]
    fn zip_bomb_with_default_limits() {
        // ~300 MB of zeros in a 1.9 MB zip; the CRC is never reached.
        let matches = 300_000_000 / 258;
        let data = deflate_zeros(matches);
        let zip = raw_zip(&[Raw {
            name: b"bomb".to_vec(),
            method: 8,
            flags: 0,
            crc: 0,
            size: u32::try_from(1 + 258 * matches).unwrap(),
            mode: 0o100_644,
            data,
        }]);
        let started = Instant::now();
        let err = inspect(&zip, &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unzipped size must be smaller than 262144000 bytes"
        );
        eprintln!("default-limit bomb rejected in {:?}", started.elapsed());
    }

    #[test]
    fn lying_size_fields_are_not_trusted() {
        let matches = 8_000;
        let real = 1 + 258 * matches as usize;
        let entry = || Raw {
            name: b"liar".to_vec(),
            method: 8,
            flags: 0,
            crc: crc32(&vec![0; real]),
            size: 10,
            mode: 0o100_644,
            data: deflate_zeros(matches),
        };
        let zip = raw_zip(&[entry()]);
        let err = inspect(&zip, &small_limits()).unwrap_err();
        assert!(matches!(err, PackageError::TooLarge { .. }), "{err:?}");

        let roomy = Limits {
            max_unzipped_bytes: 10_000_000,
            ..small_limits()
        };
        let info = inspect(&zip, &roomy).unwrap();
        assert_eq!(info.unzipped_size, real as u64);
        let dir = tempfile::tempdir().unwrap();
        extract(&zip, dir.path(), &roomy).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("liar")).unwrap().len(),
            real as u64
        );
    }

    #[test]
    fn overlapping_entries_count_once_each() {
        // Three central-directory entries sharing one compressed stream.
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file("a", SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&vec![0u8; 600_000]).unwrap();
        writer.shallow_copy_file("a", "b").unwrap();
        writer.shallow_copy_file("a", "c").unwrap();
        let zip = writer.finish().unwrap().into_inner();
        assert!(matches!(
            inspect(&zip, &small_limits()),
            Err(PackageError::TooLarge { .. })
        ));
    }

    #[test]
    fn too_many_entries_are_rejected() {
        let limits = Limits {
            max_entries: 10,
            ..small_limits()
        };
        let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let items = |n: usize| -> Vec<(&str, Item<'_>)> {
            names[..n]
                .iter()
                .map(|name| (name.as_str(), Item::File(b"x", 0o644)))
                .collect()
        };
        assert_eq!(inspect(&build(&items(10)), &limits).unwrap().entries, 10);
        let err = inspect(&build(&items(11)), &limits).unwrap_err();
        assert_eq!(err.to_string(), "The zip file has more than 10 entries");
        let err = inspect(
            &build(&items(11)),
            &Limits {
                max_entries: 20_000,
                ..limits
            },
        );
        assert!(err.is_ok());
        let err = inspect(
            &build(&items(1)),
            &Limits {
                max_entries: 0,
                ..limits
            },
        )
        .unwrap_err();
        assert!(matches!(err, PackageError::TooManyEntries { max: 0 }));
    }

    #[test]
    fn implied_directories_are_limited() {
        let limits = Limits {
            max_entries: 2,
            ..small_limits()
        };
        let zip = build(&[("a/b/c/d/e/f/g/h", Item::File(b"x", 0o644))]);
        inspect(&zip, &limits).unwrap();
        let zip = build(&[("a/b/c/d/e/f/g/h/i", Item::File(b"x", 0o644))]);
        assert!(matches!(
            inspect(&zip, &limits),
            Err(PackageError::TooManyPaths { max: 8 })
        ));
    }

    #[test]
    fn corrupt_input_gets_the_unzip_message() {
        let zip = build(&[
            ("a.txt", Item::File(&[7u8; 5000], 0o644)),
            ("b.txt", Item::File(b"bbbbbbbbbbbbbbbbbbbbb", 0o644)),
        ]);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let bad_crc = {
            let mut raw = Raw::stored("a.txt", b"hello");
            raw.crc ^= 1;
            raw_zip(&[raw])
        };
        let flipped_data = {
            let mut zip = raw_zip(&[Raw::stored("a.txt", b"hello")]);
            let at = 30 + "a.txt".len();
            zip[at] ^= 0x20;
            zip
        };
        let inputs: Vec<(&str, Vec<u8>)> = vec![
            ("half", zip[..zip.len() / 2].to_vec()),
            ("no end record", zip[..zip.len() - 22].to_vec()),
            ("random", random),
            ("empty", Vec::new()),
            ("text", b"this is not a zip file".to_vec()),
            ("bad crc", bad_crc),
            ("flipped data", flipped_data),
        ];
        for (what, input) in inputs {
            let err = inspect(&input, &small_limits()).unwrap_err();
            assert!(matches!(err, PackageError::Corrupt(_)), "{what}: {err:?}");
            assert_eq!(err.to_string(), UNZIP_MESSAGE, "{what}");
            let dir = tempfile::tempdir().unwrap();
            let err = extract(&input, dir.path(), &small_limits()).unwrap_err();
            assert_eq!(err.to_string(), UNZIP_MESSAGE, "{what}");
            assert_empty(dir.path());
        }
    }

    #[test]
    fn encrypted_and_exotic_entries_are_rejected() {
        let mut raw = Raw::stored("secret.txt", b"xxxxxxxxxxxxxxxx");
        raw.flags = 1;
        let err = inspect(&raw_zip(&[raw]), &small_limits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Zip entry 'secret.txt' is encrypted: password-protected zip files are not supported"
        );
        for method in [12, 14, 93, 95, 98, 1234] {
            let mut raw = Raw::stored("packed", b"xxxx");
            raw.method = method;
            let err = inspect(&raw_zip(&[raw]), &small_limits()).unwrap_err();
            assert!(
                matches!(
                    err,
                    PackageError::UnsupportedCompression { .. } | PackageError::Encrypted { .. }
                ),
                "{method}: {err:?}"
            );
        }
    }

    #[test]
    fn extract_requires_an_empty_directory() {
        let zip = build(&[("a.txt", Item::File(b"a", 0o644))]);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("existing"), b"keep").unwrap();
        let err = extract(&zip, dir.path(), &small_limits()).unwrap_err();
        assert!(err.is_server_error());
        assert!(!err.to_string().contains(&*dir.path().to_string_lossy()));
        assert_eq!(fs::read(dir.path().join("existing")).unwrap(), b"keep");

        let missing = dir.path().join("missing");
        assert!(matches!(
            extract(&zip, &missing, &small_limits()),
            Err(PackageError::Io(_))
        ));
    }

    #[test]
    fn extract_cleans_up_after_a_late_crc_error() {
        let mut bad = Raw::stored("z/bad.txt", b"bad bytes");
        bad.crc ^= 0xFFFF;
        let zip = raw_zip(&[
            Raw::stored("a/good.txt", b"good"),
            Raw {
                mode: 0o120_777,
                ..Raw::stored("link", b"a")
            },
            bad,
        ]);
        let dir = tempfile::tempdir().unwrap();
        let err = extract(&zip, dir.path(), &small_limits()).unwrap_err();
        assert!(matches!(err, PackageError::Corrupt(_)));
        assert_empty(dir.path());
    }

    #[test]
    fn dos_attributes_and_missing_modes_give_plain_files() {
        let zip = raw_zip(&[Raw {
            mode: 0,
            ..Raw::stored("plain.txt", b"p")
        }]);
        let dir = tempfile::tempdir().unwrap();
        extract(&zip, dir.path(), &small_limits()).unwrap();
        assert_eq!(unix_mode(&dir.path().join("plain.txt")), 0o644);
    }

    fn hash_of(zip: &[u8]) -> PackageInfo {
        inspect(zip, &small_limits()).unwrap()
    }

    #[test]
    fn code_store_put_read_remove_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code/packages")).unwrap();
        assert_eq!(store.list().unwrap(), Vec::<String>::new());

        let zip_a = build(&[("a.txt", Item::File(b"a", 0o644))]);
        let zip_b = build(&[("b.txt", Item::File(b"b", 0o644))]);
        let (a, b) = (hash_of(&zip_a), hash_of(&zip_b));
        store.put(&zip_a, &a).unwrap();
        store.put(&zip_a, &a).unwrap(); // idempotent
        store.put(&zip_b, &b).unwrap();
        assert_eq!(store.read(&a.sha256_hex()).unwrap(), zip_a);
        assert_eq!(store.read(&b.sha256_hex()).unwrap(), zip_b);
        assert!(store.contains(&a.sha256_hex()).unwrap());
        assert_eq!(
            store.path(&a.sha256_hex()),
            dir.path()
                .join("code/packages")
                .join(format!("{}.zip", a.sha256_hex()))
        );

        // Leftovers and foreign files are not packages.
        fs::write(store.root().join(".tmp-deadbeef-1-1"), b"partial").unwrap();
        fs::write(store.root().join("notes.txt"), b"x").unwrap();
        fs::write(store.root().join(format!("{}.zip", "A".repeat(64))), b"x").unwrap();
        let mut expected = vec![a.sha256_hex(), b.sha256_hex()];
        expected.sort();
        assert_eq!(store.list().unwrap(), expected);
        assert_eq!(store.remove_temp_files().unwrap(), 1);
        assert!(store.root().join("notes.txt").exists());

        store.remove(&a.sha256_hex()).unwrap();
        store.remove(&a.sha256_hex()).unwrap(); // already gone: fine
        assert!(!store.contains(&a.sha256_hex()).unwrap());
        assert_eq!(
            store.read(&a.sha256_hex()).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(store.list().unwrap(), vec![b.sha256_hex()]);

        // Reopening sees the same content.
        let reopened = CodeStore::open(store.root()).unwrap();
        assert_eq!(reopened.read(&b.sha256_hex()).unwrap(), zip_b);
    }

    #[test]
    fn code_store_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        for bad in ["../../etc/passwd", "", &"g".repeat(64), &"A".repeat(64)] {
            assert_eq!(
                store.read(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            assert_eq!(
                store.remove(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        let zip = build(&[("a.txt", Item::File(b"a", 0o644))]);
        let other = build(&[("b.txt", Item::File(b"b", 0o644))]);
        let err = store.put(&zip, &hash_of(&other)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn code_store_repairs_a_truncated_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        let zip = build(&[("a.txt", Item::File(b"a", 0o644))]);
        let info = hash_of(&zip);
        fs::write(store.path(&info.sha256_hex()), &zip[..10]).unwrap();
        store.put(&zip, &info).unwrap();
        assert_eq!(store.read(&info.sha256_hex()).unwrap(), zip);
    }

    fn sample_zip() -> Vec<u8> {
        build(&[
            ("dir/", Item::Dir),
            (
                "dir/file.txt",
                Item::File(b"some text, some text, some text", 0o644),
            ),
            ("dir/run", Item::File(b"#!/bin/sh\n", 0o755)),
            ("link", Item::Link("dir/file.txt")),
            ("up", Item::Link("dir/..")),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn inspect_never_panics_on_arbitrary_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let _ = inspect(&data, &small_limits());
        }

        #[test]
        fn inspect_never_panics_on_mutated_zips(
            mutations in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>()), 1..12),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut zip = sample_zip();
            for (at, byte) in mutations {
                let at = at.index(zip.len());
                zip[at] = byte;
            }
            if let Some(cut) = cut {
                zip.truncate(cut.index(zip.len()));
            }
            if let Ok(info) = inspect(&zip, &small_limits()) {
                prop_assert!(info.unzipped_size <= small_limits().max_unzipped_bytes);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn extract_agrees_with_inspect_on_mutated_zips(
            mutations in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut zip = sample_zip();
            for (at, byte) in mutations {
                let at = at.index(zip.len());
                zip[at] = byte;
            }
            let dir = tempfile::tempdir().unwrap();
            let inspected = inspect(&zip, &small_limits());
            let extracted = extract(&zip, dir.path(), &small_limits());
            prop_assert_eq!(inspected.is_ok(), extracted.is_ok(), "{:?} vs {:?}", inspected, extracted);
            if extracted.is_err() {
                assert_empty(dir.path());
            }
        }
    }
}
