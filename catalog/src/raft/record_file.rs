//! A file of checksummed records: appended with fsync, replayed on open, rewritten
//! atomically. The raft log and the snapshot are kept in such files.
//!
//! A record is `[length: u32 LE][crc32: u32 LE][payload]`. A crash during an append
//! leaves a partial last record (or a zero-filled tail); opening the file drops it, since
//! that append was never acknowledged. A damaged record followed by more data is
//! corruption, and opening fails rather than silently losing what follows.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
/// Larger records are refused: nothing the catalog writes comes close.
const MAX_RECORD: usize = 1 << 30;

/// An open record file, positioned for appending.
pub struct RecordFile {
    path: PathBuf,
    file: File,
    /// Records in the file, to decide when a rewrite pays off.
    records: usize,
}

impl RecordFile {
    /// Opens (creating if needed) the file at `path` and returns it with its records.
    pub fn open(path: &Path) -> io::Result<(RecordFile, Vec<Vec<u8>>)> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let (records, valid_len) = decode(&bytes).map_err(|offset| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt at byte {offset}: a damaged record is followed by more data",
                    path.display()
                ),
            )
        })?;
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if valid_len < bytes.len() {
            tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - valid_len,
                "dropping the incomplete last record of a file");
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        if bytes.is_empty() {
            sync_parent(path)?;
        }
        let count = records.len();
        let record_file = RecordFile {
            path: path.to_path_buf(),
            file,
            records: count,
        };
        Ok((record_file, records))
    }

    /// Like [`RecordFile::open`], but a file damaged before its end is repaired
    /// instead of refused: it is copied to `PATH.damaged-UNIXTIME` for inspection,
    /// then cut at the first damaged record (what followed it is lost here; a raft
    /// node gets it back from the leader).
    pub fn open_repairing(path: &Path) -> io::Result<(RecordFile, Vec<Vec<u8>>)> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Self::open(path),
            Err(err) => return Err(err),
        };
        if let Err(offset) = decode(&bytes) {
            let seconds = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let mut kept = path.as_os_str().to_owned();
            kept.push(format!(".damaged-{seconds}"));
            std::fs::copy(path, &kept)?;
            tracing::warn!(path = %path.display(), offset, lost_bytes = bytes.len() - offset,
                copy = %Path::new(&kept).display(), "cutting a damaged file at its first damaged record");
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
        Self::open(path)
    }

    /// Appends the records in one write; with `sync`, returns once they are on disk.
    pub fn append(&mut self, records: &[Vec<u8>], sync: bool) -> io::Result<()> {
        self.file.write_all(&encode(records)?)?;
        if sync {
            self.file.sync_data()?;
        }
        self.records += records.len();
        Ok(())
    }

    /// Replaces the whole file with `records`, atomically: after a crash the file holds
    /// either the old records or the new ones.
    pub fn rewrite(&mut self, records: &[Vec<u8>]) -> io::Result<()> {
        write_atomically(&self.path, records)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = records.len();
        Ok(())
    }

    /// Number of records in the file.
    pub fn len(&self) -> usize {
        self.records
    }
}

/// Writes `records` to `path` through a temporary file, fsync and rename.
pub fn write_atomically(path: &Path, records: &[Vec<u8>]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(&encode(records)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Reads the records of a file written by [`write_atomically`]; `None` when there is no
/// such file. Any damage is an error: such files are never appended to.
pub fn read_all(path: &Path) -> io::Result<Option<Vec<Vec<u8>>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    match decode(&bytes) {
        Ok((records, len)) if len == bytes.len() => Ok(Some(records)),
        Ok((_, offset)) | Err(offset) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is corrupt at byte {offset}", path.display()),
        )),
    }
}

fn encode(records: &[Vec<u8>]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len() + HEADER).sum());
    for record in records {
        if record.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {} bytes is too large", record.len()),
            ));
        }
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(record).to_le_bytes());
        out.extend_from_slice(record);
    }
    Ok(out)
}

/// The records of `bytes` and the length of their valid prefix; `Err(offset)` when a
/// damaged record is followed by data other than zeros.
fn decode(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, usize), usize> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let record = (rest.len() >= HEADER)
            .then(|| {
                let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
                let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
                let payload = rest.get(HEADER..HEADER + len)?;
                (len > 0 && len <= MAX_RECORD && crc32(payload) == crc).then_some(payload)
            })
            .flatten();
        match record {
            Some(payload) => {
                records.push(payload.to_vec());
                offset += HEADER + payload.len();
            }
            None => {
                let len = rest
                    .get(0..4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
                // A torn append: the record runs past the end (and no whole record
                // follows it: a damaged length field can look the same), or only
                // zeros follow.
                let runs_past_the_end = match len {
                    None => true,
                    Some(len) => HEADER + len >= rest.len() && !holds_a_record(&rest[1..]),
                };
                let torn = runs_past_the_end || rest.iter().all(|&b| b == 0);
                return if torn {
                    Ok((records, offset))
                } else {
                    Err(offset)
                };
            }
        }
    }
    Ok((records, offset))
}

/// Whether a whole record (its checksum right) starts anywhere in `bytes`: after a
/// damaged record, that means data followed the damage, which a torn append never leaves.
fn holds_a_record(bytes: &[u8]) -> bool {
    (0..bytes.len().saturating_sub(HEADER)).any(|start| {
        let rest = &bytes[start..];
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        len > 0 && len <= rest.len() - HEADER && crc32(&rest[HEADER..HEADER + len]) == crc
    })
}

/// fsync of the directory holding `path`, so that a created or renamed file survives.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// CRC-32 (IEEE 802.3, the one of zlib and gzip).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn appended_and_rewritten_records_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut file, found) = RecordFile::open(&path).unwrap();
        assert!(found.is_empty());
        file.append(&records(&["a", "bb"]), true).unwrap();
        file.append(&records(&["ccc"]), false).unwrap();
        drop(file);
        let (mut file, found) = RecordFile::open(&path).unwrap();
        assert_eq!((found, file.len()), (records(&["a", "bb", "ccc"]), 3));
        file.rewrite(&records(&["d"])).unwrap();
        file.append(&records(&["e"]), true).unwrap();
        drop(file);
        assert_eq!(RecordFile::open(&path).unwrap().1, records(&["d", "e"]));
    }

    #[test]
    fn a_torn_last_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut file, _) = RecordFile::open(&path).unwrap();
        file.append(&records(&["first", "second"]), true).unwrap();
        drop(file);
        let full = std::fs::read(&path).unwrap();
        for cut in [full.len() - 1, full.len() - 7, HEADER + 5 + 3] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (_, found) = RecordFile::open(&path).unwrap();
            assert_eq!(found, records(&["first"]), "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), (HEADER + 5) as u64);
        }
        let mut zero_tail = full.clone();
        zero_tail.extend_from_slice(&[0; 64]);
        std::fs::write(&path, &zero_tail).unwrap();
        assert_eq!(
            RecordFile::open(&path).unwrap().1,
            records(&["first", "second"])
        );
    }

    #[test]
    fn damage_before_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut file, _) = RecordFile::open(&path).unwrap();
        file.append(&records(&["first", "second"]), true).unwrap();
        drop(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = RecordFile::open(&path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_damaged_length_before_the_end_is_an_error_and_repair_cuts_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut file, _) = RecordFile::open(&path).unwrap();
        file.append(&records(&["first", "second", "third"]), true)
            .unwrap();
        drop(file);
        let mut bytes = std::fs::read(&path).unwrap();
        // The second record's length now runs past the end of the file.
        let second = HEADER + 5;
        bytes[second + 3] = 0x7f;
        std::fs::write(&path, &bytes).unwrap();
        let err = RecordFile::open(&path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains(&format!("byte {second}")), "{err}");

        let (_, found) = RecordFile::open_repairing(&path).unwrap();
        assert_eq!(found, records(&["first"]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), second as u64);
        let copies: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("log.damaged-"))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        let copy = std::fs::read(dir.path().join(&copies[0])).unwrap();
        assert_eq!(copy, bytes);
        assert_eq!(RecordFile::open(&path).unwrap().1, records(&["first"]));
    }

    #[test]
    fn atomic_files_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        assert_eq!(read_all(&path).unwrap(), None);
        write_atomically(&path, &records(&["meta", "data"])).unwrap();
        assert_eq!(read_all(&path).unwrap(), Some(records(&["meta", "data"])));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_all(&path).is_err());
    }
}
