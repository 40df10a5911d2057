//! Writing named tensors as a safetensors file (the format PEFT and Hugging Face read).

use candle_core::{DType, Tensor};
use std::collections::HashMap;

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
