//! Network and synced filesystems: detecting them, and the journal mode `state.db` uses there.
//!
//! SQLite's WAL mode keeps its index in shared memory (`-shm`), which only works when every
//! process is on one host; and POSIX/flock locks are unreliable over NFS, SMB and most FUSE
//! network mounts. A KB kept on such a filesystem can be silently corrupted by WAL.
//!
//! Decision (documented in docs/doctor.md):
//! - On a network filesystem openkb **refuses to write** by default: [`Error::NetworkFs`] names
//!   the filesystem and the two ways out (move the KB to a local disk, or opt in).
//! - `OPENKB_NETWORK_FS=single-host` is the opt-in for "only one machine ever uses this KB":
//!   the database then uses the rollback journal (`journal_mode=DELETE`, `synchronous=FULL`,
//!   SQLite's normal POSIX locks). The choice is pinned in the database (`meta.journal_mode =
//!   delete`), because a process on the file server itself sees a local filesystem and would
//!   otherwise switch the file back to WAL (WAL is persistent in the file). Every open honours
//!   the pin, with or without the variable.
//! - Sync-client folders (Syncthing, Dropbox) are local disks as far as `statfs` knows; they
//!   are only spotted by markers, and `openkb doctor` warns about them.
//!
//! Detection is `statfs(2)`'s `f_type` (Linux magic numbers; `libc` lacks many, so they are
//! defined here), with the FUSE subtype read from `/proc/self/mountinfo` (`fuse.sshfs`,
//! `fuse.rclone`, ...; `fuseblk` is a local block device, e.g. ntfs-3g). CI has no NFS, so
//! `OPENKB_FS_TYPE` overrides detection with a type name (`nfs`, `cifs`, `fuse.sshfs`, `ext4`):
//! a testing and diagnostic override, not a setting.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Testing/diagnostic override of the detected filesystem type name.
pub const FS_TYPE_ENV: &str = "OPENKB_FS_TYPE";
/// Opt-in for rollback-journal mode on a network filesystem used by one host at a time.
pub const NETWORK_FS_ENV: &str = "OPENKB_NETWORK_FS";
/// The only accepted value of [`NETWORK_FS_ENV`].
pub const SINGLE_HOST: &str = "single-host";

/// What the filesystem holding a path is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FsInfo {
    /// The path that was examined.
    pub path: PathBuf,
    /// A type name: `nfs`, `cifs`, `fuse.sshfs`, `ext4`, ... (`0x...` for unknown magics).
    pub name: String,
    /// True for network, cluster and shared-folder filesystems (where WAL is unsafe).
    pub network: bool,
    /// True when the type came from [`FS_TYPE_ENV`] instead of `statfs`.
    pub overridden: bool,
}

// Magic numbers of `statfs.f_type` (see the network-filesystems reference in the project notes).
// Named as in linux/magic.h or coreutils' stat.c; those `libc` has are used from `libc`.
const CIFS_SUPER_MAGIC: u64 = 0xFF53_4D42;
const SMB2_SUPER_MAGIC: u64 = 0xFE53_4D42;
const V9FS_MAGIC: u64 = 0x0102_1997;
const AFS_FS_MAGIC: u64 = 0x6B41_4653;
const CEPH_SUPER_MAGIC: u64 = 0x00C3_6400;
const GFS2_MAGIC: u64 = 0x0116_1970;
const S_MAGIC_LUSTRE: u64 = 0x0BD0_0BD0;
const S_MAGIC_GPFS: u64 = 0x4750_4653;
const S_MAGIC_FHGFS: u64 = 0x1983_0326;
const S_MAGIC_PANFS: u64 = 0xAAD7_AAEA;
const S_MAGIC_SNFS: u64 = 0xBEEF_DEAD;
const S_MAGIC_IBRIX: u64 = 0x0131_11A8;
const S_MAGIC_ACFS: u64 = 0x6163_6673;
const VXFS_SUPER_MAGIC: u64 = 0xA501_FCF5;
const S_MAGIC_VBOXSF: u64 = 0x786F_4256;
const S_MAGIC_VMHGFS: u64 = 0xBACB_ACBC;
const S_MAGIC_PRL_FS: u64 = 0x7C7C_6673;
const S_MAGIC_WSLFS: u64 = 0x5346_414F;

/// Network/shared filesystems by magic number, with the name shown to users.
fn network_magic_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        m if m == libc::NFS_SUPER_MAGIC as u64 => "nfs",
        CIFS_SUPER_MAGIC => "cifs",
        SMB2_SUPER_MAGIC => "smb2",
        m if m == libc::SMB_SUPER_MAGIC as u64 => "smbfs",
        // 9p: WSL2's /mnt/c and QEMU shares; its locking does not reach the host's files.
        V9FS_MAGIC => "9p",
        m if m == libc::AFS_SUPER_MAGIC as u64 => "afs",
        AFS_FS_MAGIC => "kafs",
        CEPH_SUPER_MAGIC => "ceph",
        m if m == libc::CODA_SUPER_MAGIC as u64 => "coda",
        m if m == libc::NCP_SUPER_MAGIC as u64 => "ncpfs",
        m if m == libc::OCFS2_SUPER_MAGIC as u64 => "ocfs2",
        GFS2_MAGIC => "gfs2",
        S_MAGIC_LUSTRE => "lustre",
        S_MAGIC_GPFS => "gpfs",
        S_MAGIC_FHGFS => "beegfs",
        S_MAGIC_PANFS => "panfs",
        S_MAGIC_SNFS => "stornext",
        S_MAGIC_IBRIX => "ibrix",
        S_MAGIC_ACFS => "acfs",
        VXFS_SUPER_MAGIC => "vxfs",
        S_MAGIC_VBOXSF => "vboxsf",
        S_MAGIC_VMHGFS => "vmhgfs",
        S_MAGIC_PRL_FS => "prl_fs",
        // WSL1 DrvFs: Windows files seen through a translation layer; SQLite's shared memory
        // and locks are not reliable there either.
        S_MAGIC_WSLFS => "wslfs",
        _ => return None,
    })
}

/// Common local filesystems, only to name them in `doctor`'s output.
fn local_magic_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x4d44 => "vfat",
        0x5346_544e => "ntfs",
        0x7366_746E => "ntfs3",
        0xCA45_1A4E => "bcachefs",
        _ => return None,
    })
}

/// Classify a filesystem type name, as `/proc/self/mountinfo` or [`FS_TYPE_ENV`] spell it.
pub fn is_network_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name == "fuseblk" || name.starts_with("fuseblk.") {
        return false;
    }
    // Every other FUSE filesystem: sshfs, rclone, s3fs, gcsfuse, ceph-fuse, ... and plain
    // `fuse` with no subtype, which cannot be told apart, so it is treated as network.
    if name == "fuse" || name.starts_with("fuse.") {
        return true;
    }
    matches!(
        name.as_str(),
        "nfs"
            | "nfs4"
            | "cifs"
            | "smb"
            | "smb2"
            | "smb3"
            | "smbfs"
            | "9p"
            | "v9fs"
            | "afs"
            | "kafs"
            | "ceph"
            | "coda"
            | "ncp"
            | "ncpfs"
            | "ocfs2"
            | "gfs"
            | "gfs2"
            | "lustre"
            | "gpfs"
            | "beegfs"
            | "fhgfs"
            | "panfs"
            | "stornext"
            | "snfs"
            | "ibrix"
            | "acfs"
            | "vxfs"
            | "vboxsf"
            | "vmhgfs"
            | "prl_fs"
            | "wslfs"
            | "drvfs"
            | "glusterfs"
            | "davfs"
            | "webdav"
    )
}

/// What the user decided about network filesystems: the part of
/// [`crate::settings::Settings`] this module and the state layer use. The default refuses to
/// write on a network filesystem and detects the type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsPolicy {
    /// `OPENKB_NETWORK_FS=single-host`: write there in rollback-journal mode.
    pub single_host: bool,
    /// `OPENKB_FS_TYPE`: the filesystem type to assume (testing and diagnosis).
    pub fs_type: Option<String>,
}

/// What filesystem holds `path` (which must exist), or the type `policy` says to assume.
pub fn detect(path: &Path, policy: &FsPolicy) -> Result<FsInfo> {
    if let Some(name) = &policy.fs_type {
        return Ok(FsInfo {
            path: path.to_path_buf(),
            network: is_network_name(name),
            name: name.clone(),
            overridden: true,
        });
    }
    let magic = statfs_type(path)?;
    let (name, network) = if magic == libc::FUSE_SUPER_MAGIC as u64 {
        let name = fuse_type_name(path).unwrap_or_else(|| "fuse".to_owned());
        let network = is_network_name(&name);
        (name, network)
    } else if let Some(name) = network_magic_name(magic) {
        (name.to_owned(), true)
    } else if let Some(name) = local_magic_name(magic) {
        (name.to_owned(), false)
    } else {
        (format!("{magic:#x}"), false)
    };
    Ok(FsInfo {
        path: path.to_path_buf(),
        name,
        network,
        overridden: false,
    })
}

/// The first network filesystem among `paths` (a mount point may sit between a KB root and
/// its `.openkb/`), else the filesystem of the first path.
pub fn detect_any(paths: &[&Path], policy: &FsPolicy) -> Result<Option<FsInfo>> {
    let mut first = None;
    for path in paths {
        let info = detect(path, policy)?;
        if info.network {
            return Ok(Some(info));
        }
        first.get_or_insert(info);
    }
    Ok(first)
}

/// Whether `OPENKB_NETWORK_FS` (its value, if set) opts in to single-host rollback mode. Any
/// other value than `single-host` is an error, so a typo does not silently leave writes
/// refused.
pub fn parse_network_fs(raw: Option<std::ffi::OsString>) -> Result<bool> {
    match raw {
        None => Ok(false),
        Some(v) if v.is_empty() => Ok(false),
        Some(v) if v == SINGLE_HOST => Ok(true),
        Some(v) => Err(Error::Invalid(format!(
            "{NETWORK_FS_ENV}={:?} is not understood; the only value is `{SINGLE_HOST}` (one \
             machine at a time uses this KB; SQLite then uses its rollback journal)",
            v.to_string_lossy()
        ))),
    }
}

fn statfs_type(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{}: path contains a NUL byte", path.display())))?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is a valid C string.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(Error::io(
            "cannot inspect the filesystem of",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    // f_type is a signed word on some targets; magic numbers are 32-bit patterns.
    Ok(buf.f_type as u64 & 0xFFFF_FFFF)
}

/// The `type[.subtype]` of the mount holding `path`, from `/proc/self/mountinfo`.
fn fuse_type_name(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_type_of(&text, &path)
}

/// Longest mount point that contains `path`, and its filesystem type (field 9 of a
/// mountinfo line, the first after the ` - ` separator).
fn mount_type_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fs_type)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        let mount_point = unescape_mountinfo(mount_point);
        if path.starts_with(&mount_point) {
            let depth = Path::new(&mount_point).components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, (*fs_type).to_owned()));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // `\400` and up name no byte: kept as written (and no u8 overflow).
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            digits
                .iter()
                .try_fold(0u32, |n, b| {
                    (b'0'..=b'7')
                        .contains(b)
                        .then(|| n * 8 + u32::from(b - b'0'))
                })
                .and_then(|n| u8::try_from(n).ok())
        });
        if bytes[i] == b'\\'
            && let Some(value) = octal
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sync-client markers (best effort): Syncthing's `.stfolder` in the KB or an ancestor, and
/// Dropbox's extended attribute on the KB folder. Each entry says what was found.
pub fn sync_markers(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in root.ancestors() {
        if dir.join(".stfolder").exists() {
            found.push(format!(
                "Syncthing folder marker {}",
                dir.join(".stfolder").display()
            ));
            break;
        }
    }
    for dir in root.ancestors() {
        if has_xattr(dir, "user.com.dropbox.attrs") {
            found.push(format!("Dropbox attributes on {}", dir.display()));
            break;
        }
        if dir.join(".dropbox.cache").is_dir() || dir.join(".dropbox").is_file() {
            found.push(format!("Dropbox folder {}", dir.display()));
            break;
        }
    }
    found
}

fn has_xattr(path: &Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(c_path), Ok(c_name)) = (
        std::ffi::CString::new(path.as_os_str().as_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: a size query (null buffer, 0 length) on valid C strings.
    let rc = unsafe { libc::getxattr(c_path.as_ptr(), c_name.as_ptr(), std::ptr::null_mut(), 0) };
    rc >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/mnt/\\777x\\04"), "/mnt/\\777x\\04");
        assert_eq!(unescape_mountinfo("\\"), "\\");
    }

    #[test]
    fn names_are_classified() {
        for net in [
            "nfs",
            "nfs4",
            "cifs",
            "smb3",
            "fuse.sshfs",
            "fuse.rclone",
            "fuse",
            "9p",
        ] {
            assert!(is_network_name(net), "{net}");
        }
        for local in ["ext4", "xfs", "btrfs", "fuseblk", "tmpfs", "overlay", "zfs"] {
            assert!(!is_network_name(local), "{local}");
        }
    }

    #[test]
    fn mountinfo_picks_the_deepest_mount_and_unescapes() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /mnt/my\\040share rw,nosuid - fuse.sshfs host:/x rw,user_id=0
41 22 0:51 / /mnt/disk rw - fuseblk /dev/sdb1 rw
";
        assert_eq!(
            mount_type_of(info, Path::new("/mnt/my share/kb/.openkb")).as_deref(),
            Some("fuse.sshfs")
        );
        assert_eq!(
            mount_type_of(info, Path::new("/mnt/disk/kb")).as_deref(),
            Some("fuseblk")
        );
        assert_eq!(
            mount_type_of(info, Path::new("/home/u")).as_deref(),
            Some("ext4")
        );
    }

    #[test]
    fn a_real_local_folder_is_not_network() {
        let dir = tempfile::tempdir().unwrap();
        let info = detect(dir.path(), &FsPolicy::default()).unwrap();
        assert!(!info.overridden);
        assert!(!info.network || info.name.starts_with("fuse"), "{info:?}");
        let assumed = FsPolicy {
            fs_type: Some("nfs4".into()),
            ..FsPolicy::default()
        };
        let info = detect(dir.path(), &assumed).unwrap();
        assert!(info.overridden && info.network, "{info:?}");
    }
}
