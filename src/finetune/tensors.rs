//! Writing named tensors as a safetensors file (the format PEFT and Hugging Face read), and
//! reading them one at a time.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Where one tensor lies in a safetensors file.
#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// The tensors of one or more safetensors files (a sharded checkpoint), read one at a time: the
/// headers are parsed up front and each tensor's bytes are read from disk when asked for, so at
/// most one tensor is in host memory however large the model.
pub struct SafetensorsFiles {
    paths: Vec<PathBuf>,
    files: Vec<std::fs::File>,
    entries: HashMap<String, Entry>,
}

impl SafetensorsFiles {
    /// Parses the headers of `paths`.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = vec![];
        let mut entries = HashMap::new();
        for (fi, p) in paths.iter().enumerate() {
            let bad = |why: String| Error::Model(format!("{}: not a safetensors file ({why})", p.display()));
            let mut f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            let size = f.metadata().map_err(|e| Error::io(p, e))?.len();
            let mut n = [0u8; 8];
            f.read_exact(&mut n).map_err(|e| bad(e.to_string()))?;
            let n = u64::from_le_bytes(n);
            if n > 100 << 20 || 8 + n > size {
                return Err(bad(format!("header of {n} bytes")));
            }
            let mut header = vec![0u8; n as usize];
            f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
            for (name, info) in v {
                if name == "__metadata__" {
                    continue;
                }
                let dtype = match info["dtype"].as_str().unwrap_or("") {
                    "F32" => DType::F32,
                    "BF16" => DType::BF16,
                    "F16" => DType::F16,
                    "F64" => DType::F64,
                    other => return Err(bad(format!("{name}: dtype {other} is not supported"))),
                };
                let shape: Vec<usize> = info["shape"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
                    .unwrap_or_default();
                let off = info["data_offsets"].as_array().map(|a| (a[0].as_u64(), a[1].as_u64()));
                let Some((Some(a), Some(b))) = off else { return Err(bad(format!("{name}: no data_offsets"))) };
                let (start, end) = (8 + n + a, 8 + n + b);
                let want = shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
                if end < start || end > size || end - start != want {
                    return Err(bad(format!("{name}: data_offsets {a}..{b} do not hold {shape:?} {dtype:?}")));
                }
                entries.insert(name, Entry { file: fi, dtype, shape, start, end });
            }
            files.push(f);
        }
        Ok(Self { paths: paths.to_vec(), files, entries })
    }

    /// Reads tensor `name` onto `device` in its stored dtype; `None` when no file has it.
    pub fn read(&mut self, name: &str, device: &Device) -> Result<Option<Tensor>> {
        let Some(e) = self.entries.get(name) else { return Ok(None) };
        let (f, p) = (&mut self.files[e.file], &self.paths[e.file]);
        let mut bytes = vec![0u8; (e.end - e.start) as usize];
        f.seek(SeekFrom::Start(e.start)).and_then(|_| f.read_exact(&mut bytes)).map_err(|e| Error::io(p, e))?;
        Ok(Some(Tensor::from_raw_buffer(&bytes, e.dtype, &e.shape, device)?))
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Serializes named f32 tensors in the safetensors format (keys sorted).
pub fn safetensors_bytes(map: &HashMap<String, Tensor>) -> crate::Result<Vec<u8>> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for k in keys {
        let t = &map[k];
        let t = t.to_dtype(DType::F32).and_then(|t| t.flatten_all())?;
        let v = t.to_vec1::<f32>()?;
        let start = data.len();
        for x in &v {
            data.extend_from_slice(&x.to_le_bytes());
        }
        header.insert(
            k.clone(),
            serde_json::json!({"dtype": "F32", "shape": map[k].dims(), "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_string(&header).map_err(|e| crate::Error::Model(e.to_string()))?.into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A safetensors file by hand: one bf16 tensor (the top halves of f32 values).
    fn bf16_file(values: &[f32], shape: &[usize]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let header = serde_json::json!({
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "BF16", "shape": shape, "data_offsets": [0, data.len()]},
        })
        .to_string();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn reads_back_what_it_wrote_one_tensor_at_a_time_across_shards() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
        let b = Tensor::new(&[1.5f32, -2.0], &Device::Cpu).unwrap();
        let f1 = write(
            tmp.path(),
            "a.safetensors",
            &safetensors_bytes(&HashMap::from([("a".to_string(), a.clone())])).unwrap(),
        );
        // bf16 values that bf16 holds exactly.
        let f2 = write(tmp.path(), "b.safetensors", &bf16_file(&[0.5, -3.0, 256.0, 0.0, 1.0, 7.0], &[2, 3]));
        let f3 = write(
            tmp.path(),
            "c.safetensors",
            &safetensors_bytes(&HashMap::from([("b".to_string(), b.clone())])).unwrap(),
        );
        let mut st = SafetensorsFiles::open(&[f1, f2, f3]).unwrap();
        assert!(st.contains("a") && st.contains("w") && !st.contains("__metadata__"));
        let got = st.read("a", &Device::Cpu).unwrap().unwrap();
        assert_eq!(got.dims(), &[3, 4]);
        assert_eq!(got.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        let w = st.read("w", &Device::Cpu).unwrap().unwrap();
        assert_eq!(w.dtype(), DType::BF16);
        assert_eq!(
            w.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(),
            vec![vec![0.5, -3.0, 256.0], vec![0.0, 1.0, 7.0]]
        );
        assert_eq!(st.read("b", &Device::Cpu).unwrap().unwrap().to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
        assert!(st.read("missing", &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn a_truncated_or_inconsistent_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let good = bf16_file(&[1.0, 2.0], &[2]);
        let cut = write(tmp.path(), "cut.safetensors", &good[..good.len() - 1]);
        let e = SafetensorsFiles::open(&[cut]).err().unwrap().to_string();
        assert!(e.contains("cut.safetensors") && e.contains("data_offsets"), "{e}");
        let wrong_shape = bf16_file(&[1.0, 2.0], &[3]);
        let e = SafetensorsFiles::open(&[write(tmp.path(), "shape.safetensors", &wrong_shape)]).err().unwrap();
        assert!(e.to_string().contains("do not hold"), "{e}");
        let e =
            SafetensorsFiles::open(&[write(tmp.path(), "junk.safetensors", b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk")]);
        assert!(e.err().unwrap().to_string().contains("not a safetensors file"));
    }
}
