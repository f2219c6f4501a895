//! A safetensors file read a piece at a time: its header checked on its own, then tensor groups cut out in file order
//! (so loading never holds the whole file in memory beside the model), from memory, a file or a download stream.

use std::collections::BTreeMap;

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use crate::error::{Error, Result};

/// safetensors' own limit on the JSON header.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The bytes of a safetensors file, wherever they live. `read_into` is only called with ranges inside `len()`.
pub trait WeightsBytes {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<()>;
}

impl WeightsBytes for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).map_err(|_| Error::Internal("weights offset past usize".into()))?;
        let source = start.checked_add(out.len()).and_then(|end| self.get(start..end));
        out.copy_from_slice(source.ok_or_else(|| Error::Internal("weights read past the end".into()))?);
        Ok(())
    }
}

/// A weights file on disk, read where it is needed instead of all at once.
#[cfg(not(target_arch = "wasm32"))]
pub struct WeightsFile {
    file: std::sync::Mutex<std::fs::File>,
    len: u64,
    shown: String,
}

#[cfg(not(target_arch = "wasm32"))]
impl WeightsFile {
    /// Opens a regular file of at most `max_bytes`.
    pub fn open(path: &std::path::Path, max_bytes: u64) -> Result<Self> {
        let shown = path.display().to_string();
        // Checked before opening too: opening a FIFO blocks until someone writes to it.
        let checked = |meta: std::io::Result<std::fs::Metadata>| meta.map_err(|e| Error::io(&shown, e));
        if !checked(std::fs::metadata(path))?.is_file() {
            return Err(Error::weights(&shown, "not a regular file"));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(&shown, e))?;
        let meta = checked(file.metadata())?;
        if !meta.is_file() {
            return Err(Error::weights(&shown, "not a regular file"));
        }
        if meta.len() > max_bytes {
            return Err(Error::weights(
                &shown,
                format!("{} bytes is larger than any supported CLIP ({max_bytes} bytes at most)", meta.len()),
            ));
        }
        Ok(WeightsFile { file: std::sync::Mutex::new(file), len: meta.len(), shown })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl WeightsBytes for WeightsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = self.file.lock().map_err(|_| Error::Internal("weights file lock poisoned".into()))?;
        // A file cut short while it is read ends here with an error, not with garbage.
        file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(out)).map_err(|e| Error::io(&self.shown, e))
    }
}

/// The checked header of a safetensors file: every tensor's place, and the whole layout proven consistent with the
/// file's length before any tensor is read.
pub struct SafetensorsLayout {
    /// Tensors in file order (increasing offsets), offsets relative to `data_start`.
    pub tensors: Vec<(String, TensorInfo)>,
    /// Where the tensor data begins: 8 + the header's length.
    pub data_start: u64,
}

impl SafetensorsLayout {
    /// Reads and checks the header. `name` is used in messages.
    pub fn read(source: &(impl WeightsBytes + ?Sized), name: &str) -> Result<Self> {
        let len = source.len();
        let mut prefix = [0u8; 8];
        if len < 8 {
            return Err(invalid(name, format!("{len} bytes, shorter than the 8-byte header length")));
        }
        source.read_into(0, &mut prefix)?;
        let data_start = Self::data_start(&prefix, Some(len), name)?;
        let mut header = vec![0u8; (data_start - 8) as usize];
        source.read_into(8, &mut header)?;
        Self::parse(&header, Some(len), name)
    }

    /// Where the tensor data begins (8 + the header's length), from the file's first 8 bytes; `len` is the file's
    /// length when it is known before the rest arrives (a download may not say).
    pub fn data_start(prefix: &[u8; 8], len: Option<u64>, name: &str) -> Result<u64> {
        if let Some(kind) = pickle_kind(prefix) {
            return Err(Error::weights(
                name,
                format!(
                    "is a PyTorch {kind}, not safetensors; pickles are not loaded (they can run code): use the model's model.safetensors"
                ),
            ));
        }
        let header_len = u64::from_le_bytes(*prefix);
        if header_len > MAX_HEADER_BYTES {
            return Err(invalid(name, format!("a {header_len}-byte header (at most {MAX_HEADER_BYTES})")));
        }
        match len {
            Some(len) if 8 + header_len > len => {
                Err(invalid(name, format!("the header says {header_len} bytes but the file has {len} in all")))
            }
            _ => Ok(8 + header_len),
        }
    }

    /// Parses and checks the JSON header (the bytes after the first 8). With `len` known the layout must end exactly
    /// at the end of the file; without it, whoever reads the data checks that it ends where the layout says.
    pub fn parse(header: &[u8], len: Option<u64>, name: &str) -> Result<Self> {
        let data_start = 8 + header.len() as u64;
        let text = std::str::from_utf8(header).map_err(|e| invalid(name, format!("the header is not UTF-8: {e}")))?;
        let metadata: Metadata = serde_json::from_str(text).map_err(|e| invalid(name, format!("bad header: {e}")))?;
        let mut tensors: Vec<(String, TensorInfo)> =
            metadata.tensors().into_iter().map(|(n, info)| (n, info.clone())).collect();
        tensors.sort_by_key(|(_, info)| info.data_offsets);
        // The same rules as safetensors' own check: tensors back to back from 0, each exactly its shape's size, and
        // the last one ending at the end of the file.
        let mut end = 0usize;
        for (tensor, info) in &tensors {
            let (start, stop) = info.data_offsets;
            if start != end || stop < start {
                return Err(invalid(
                    name,
                    format!("tensor {tensor} does not follow the previous one ({start}..{stop})"),
                ));
            }
            let size = info
                .shape
                .iter()
                .try_fold(info.dtype.bitsize(), |n, &d| n.checked_mul(d))
                .filter(|bits| bits % 8 == 0)
                .map(|bits| bits / 8);
            if size != Some(stop - start) {
                return Err(invalid(
                    name,
                    format!("tensor {tensor} has {} bytes for shape {:?}", stop - start, info.shape),
                ));
            }
            end = stop;
        }
        if let Some(len) = len
            && data_start.checked_add(end as u64) != Some(len)
        {
            return Err(invalid(
                name,
                format!("the header describes {} bytes of data, the file holds {}", end, len - data_start),
            ));
        }
        Ok(SafetensorsLayout { tensors, data_start })
    }

    /// How many bytes of tensor data follow the header.
    pub fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |(_, info)| info.data_offsets.1 as u64)
    }

    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors.iter().map(|(n, info)| (n.clone(), info.shape.clone())).collect()
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, info)| info)
    }

    /// A tensor's bytes, read on their own.
    pub fn tensor_bytes(&self, source: &(impl WeightsBytes + ?Sized), name: &str) -> Result<Option<Vec<u8>>> {
        let Some(info) = self.info(name) else { return Ok(None) };
        let mut out = vec![0u8; info.data_offsets.1 - info.data_offsets.0];
        source.read_into(self.data_start + info.data_offsets.0 as u64, &mut out)?;
        Ok(Some(out))
    }

    /// The tensors cut into consecutive groups of about `group_bytes` of data each (a tensor larger than that is a
    /// group of its own), in file order, as ranges of `tensors`.
    pub fn groups(&self, group_bytes: usize) -> Vec<std::ops::Range<usize>> {
        let mut groups = Vec::new();
        let mut first = 0;
        while first < self.tensors.len() {
            let start = self.tensors[first].1.data_offsets.0;
            let mut last = first;
            while last + 1 < self.tensors.len() && self.tensors[last + 1].1.data_offsets.1 - start <= group_bytes {
                last += 1;
            }
            groups.push(first..last + 1);
            first = last + 1;
        }
        groups
    }

    /// A group of tensors as the start of a self-contained safetensors file: its tensors with offsets relative to
    /// the group's data, and the file's bytes up to where that data goes (with room reserved for it), so the data
    /// can be appended as it is read.
    pub fn group_file(&self, group: std::ops::Range<usize>) -> Result<GroupFile> {
        let tensors = &self.tensors[group];
        let start = tensors.first().map_or(0, |(_, info)| info.data_offsets.0);
        let stop = tensors.last().map_or(0, |(_, info)| info.data_offsets.1);
        let tensors: Vec<(String, TensorInfo)> = tensors
            .iter()
            .map(|(n, info)| {
                let offsets = (info.data_offsets.0 - start, info.data_offsets.1 - start);
                (n.clone(), TensorInfo { dtype: info.dtype, shape: info.shape.clone(), data_offsets: offsets })
            })
            .collect();
        let header: BTreeMap<&str, &TensorInfo> = tensors.iter().map(|(n, info)| (n.as_str(), info)).collect();
        let mut json = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut bytes = Vec::with_capacity(8 + json.len() + (stop - start));
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json);
        Ok(GroupFile { tensors, data_at: bytes.len(), data_len: stop - start, bytes })
    }
}

/// A group of tensors being made into a safetensors file of its own (see `SafetensorsLayout::group_file`).
pub struct GroupFile {
    /// The group's tensors, offsets relative to its data.
    pub tensors: Vec<(String, TensorInfo)>,
    /// The file so far: header, then the data read until now.
    pub bytes: Vec<u8>,
    /// Where the data starts in `bytes`.
    pub data_at: usize,
    /// How many data bytes the group has in all.
    pub data_len: usize,
}

impl GroupFile {
    /// Data bytes still wanted.
    pub fn wanted(&self) -> usize {
        self.data_at + self.data_len - self.bytes.len()
    }

    /// The group's data read so far.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.data_at..]
    }
}

fn invalid(name: &str, why: String) -> Error {
    Error::weights(name, format!("not a valid safetensors file (corrupt or truncated?): {why}"))
}

fn pickle_kind(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [b'P', b'K', 3, 4, ..] => Some("zip checkpoint (torch.save)"),
        [0x80, 2..=5, ..] => Some("pickle"),
        _ => None,
    }
}

/// Whether every float of a tensor is finite (integer tensors always are). A float is not finite exactly when its
/// exponent bits are all ones, which is checked on the raw little-endian bits.
pub fn all_finite(dtype: Dtype, data: &[u8]) -> bool {
    match dtype {
        Dtype::F32 => {
            data.chunks_exact(4).all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7F80_0000 != 0x7F80_0000)
        }
        Dtype::F16 => data.chunks_exact(2).all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7C00 != 0x7C00),
        Dtype::BF16 => data.chunks_exact(2).all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7F80 != 0x7F80),
        Dtype::F64 => data.chunks_exact(8).all(|c| {
            u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) & 0x7FF0_0000_0000_0000 != 0x7FF0_0000_0000_0000
        }),
        _ => true,
    }
}

/// FNV-1a over the file's 8-byte little-endian words (the last one shorter), fed in pieces of any size: fast enough
/// for 600 MB, and any changed weight changes it.
pub struct Fingerprint {
    hash: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint { hash: 0xcbf2_9ce4_8422_2325, pending: [0; 8], pending_len: 0 }
    }
}

impl Fingerprint {
    pub fn update(&mut self, mut bytes: &[u8]) {
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < 8 {
                return;
            }
            let word = self.pending;
            self.word(&word);
            self.pending_len = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(w);
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    fn word(&mut self, bytes: &[u8]) {
        let w = bytes.iter().rev().fold(0u64, |w, &b| (w << 8) | b as u64);
        self.hash = (self.hash ^ w).wrapping_mul(0x100_0000_01b3);
    }

    pub fn finish(mut self) -> u64 {
        if self.pending_len > 0 {
            let word = self.pending;
            self.word(&word[..self.pending_len]);
        }
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint fed in odd pieces equals the one-pass FNV-1a over 8-byte words that sidecars already record.
    #[test]
    fn fingerprint_does_not_depend_on_how_the_bytes_are_cut() {
        let bytes: Vec<u8> = (0..1003u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let words = bytes.chunks(8).map(|c| c.iter().rev().fold(0u64, |w, &b| (w << 8) | b as u64));
        let one_pass = words.fold(0xcbf2_9ce4_8422_2325u64, |h, w| (h ^ w).wrapping_mul(0x100_0000_01b3));
        for cut in [1, 3, 7, 8, 13, 64, 1003] {
            let mut f = Fingerprint::default();
            bytes.chunks(cut).for_each(|piece| f.update(piece));
            assert_eq!(f.finish(), one_pass, "pieces of {cut}");
        }
    }
}
