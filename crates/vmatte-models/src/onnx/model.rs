//! The subset of `onnx.proto` the importer needs, decoded with [`super::wire`].
//!
//! Field numbers (onnx.proto, proto2):
//! - ModelProto: graph = 7
//! - GraphProto: node = 1, initializer = 5, input = 11, output = 12
//! - ValueInfoProto: name = 1
//! - NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5
//! - AttributeProto: name = 1, f = 2, i = 3, s = 4, t = 5, floats = 7,
//!   ints = 8, type = 20
//! - TensorProto: dims = 1, data_type = 2, float_data = 4 (packed),
//!   int32_data = 5 (packed), name = 8, raw_data = 9, external_data = 13,
//!   data_location = 14
//!
//! Unknown fields are skipped, as protobuf requires.

use super::wire::Fields;

/// `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;
/// `TensorProto.DataType.FLOAT16`.
pub const FLOAT16: i32 = 10;

#[derive(Debug, Default, Clone)]
pub struct Tensor<'a> {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub raw_data: Option<&'a [u8]>,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i64>,
    pub external: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Attribute<'a> {
    pub name: String,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<&'a [u8]>,
    pub t: Option<Tensor<'a>>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct Node<'a> {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute<'a>>,
}

impl<'a> Node<'a> {
    pub fn attr(&self, name: &str) -> Option<&Attribute<'a>> {
        self.attributes.iter().rev().find(|a| a.name == name)
    }
}

#[derive(Debug, Default, Clone)]
pub struct Graph<'a> {
    pub nodes: Vec<Node<'a>>,
    pub initializers: Vec<Tensor<'a>>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// Decodes a serialized `ModelProto` and returns its graph.
pub fn parse_model(buf: &[u8]) -> Result<Graph<'_>, String> {
    let mut graph = None;
    for field in Fields::new(buf) {
        let (no, value) = field.map_err(|e| format!("ModelProto: {e}"))?;
        if no == 7 {
            graph = Some(parse_graph(value.as_bytes()?).map_err(|e| format!("graph: {e}"))?);
        }
    }
    graph.ok_or_else(|| "no graph in the ModelProto".to_string())
}

fn parse_graph(buf: &[u8]) -> Result<Graph<'_>, String> {
    let mut g = Graph::default();
    for field in Fields::new(buf) {
        let (no, value) = field?;
        match no {
            1 => {
                let i = g.nodes.len();
                g.nodes
                    .push(parse_node(value.as_bytes()?).map_err(|e| format!("node {i}: {e}"))?);
            }
            5 => {
                let i = g.initializers.len();
                g.initializers.push(
                    parse_tensor(value.as_bytes()?).map_err(|e| format!("initializer {i}: {e}"))?,
                );
            }
            11 => g.inputs.push(parse_value_info_name(value.as_bytes()?)?),
            12 => g.outputs.push(parse_value_info_name(value.as_bytes()?)?),
            _ => {}
        }
    }
    Ok(g)
}

fn parse_value_info_name(buf: &[u8]) -> Result<String, String> {
    let mut name = String::new();
    for field in Fields::new(buf) {
        let (no, value) = field?;
        if no == 1 {
            name = value.as_string()?;
        }
    }
    Ok(name)
}

fn parse_node(buf: &[u8]) -> Result<Node<'_>, String> {
    let mut n = Node::default();
    for field in Fields::new(buf) {
        let (no, value) = field?;
        match no {
            1 => n.inputs.push(value.as_string()?),
            2 => n.outputs.push(value.as_string()?),
            3 => n.name = value.as_string()?,
            4 => n.op_type = value.as_string()?,
            5 => n.attributes.push(parse_attribute(value.as_bytes()?)?),
            _ => {}
        }
    }
    Ok(n)
}

fn parse_attribute(buf: &[u8]) -> Result<Attribute<'_>, String> {
    let mut a = Attribute::default();
    for field in Fields::new(buf) {
        let (no, value) = field?;
        match no {
            1 => a.name = value.as_string()?,
            2 => a.f = Some(value.as_f32()?),
            3 => a.i = Some(value.as_i64()?),
            4 => a.s = Some(value.as_bytes()?),
            5 => a.t = Some(parse_tensor(value.as_bytes()?)?),
            7 => value.push_f32s(&mut a.floats)?,
            8 => value.push_i64s(&mut a.ints)?,
            _ => {}
        }
    }
    Ok(a)
}

fn parse_tensor(buf: &[u8]) -> Result<Tensor<'_>, String> {
    let mut t = Tensor::default();
    for field in Fields::new(buf) {
        let (no, value) = field?;
        match no {
            1 => value.push_i64s(&mut t.dims)?,
            2 => t.data_type = value.as_i64()? as i32,
            4 => value.push_f32s(&mut t.float_data)?,
            5 => value.push_i64s(&mut t.int32_data)?,
            8 => t.name = value.as_string()?,
            9 => t.raw_data = Some(value.as_bytes()?),
            13 => t.external = true,
            14 => t.external |= value.as_i64()? == 1,
            _ => {}
        }
    }
    Ok(t)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24.
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

impl Tensor<'_> {
    /// The shape, checked: every dimension non-negative, the element count
    /// representable.
    pub fn shape(&self) -> Result<Vec<usize>, String> {
        let mut numel: usize = 1;
        let mut shape = Vec::with_capacity(self.dims.len());
        for &d in &self.dims {
            let d = usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?;
            numel = numel
                .checked_mul(d)
                .ok_or_else(|| format!("dimensions {:?} overflow", self.dims))?;
            shape.push(d);
        }
        Ok(shape)
    }

    /// The values as `f32`, from FLOAT or FLOAT16 data, checked against the
    /// shape.
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        if self.external {
            return Err("tensor data stored in an external file is not supported".into());
        }
        let numel: usize = self.shape()?.iter().product();
        let values: Vec<f32> = match (self.data_type, self.raw_data) {
            (FLOAT, Some(raw)) => {
                if Some(raw.len()) != numel.checked_mul(4) {
                    return Err(format!(
                        "raw_data has {} bytes, dims {:?} need {numel} floats",
                        raw.len(),
                        self.dims
                    ));
                }
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect()
            }
            (FLOAT, None) => self.float_data.clone(),
            (FLOAT16, Some(raw)) => {
                if Some(raw.len()) != numel.checked_mul(2) {
                    return Err(format!(
                        "raw_data has {} bytes, dims {:?} need {numel} halves",
                        raw.len(),
                        self.dims
                    ));
                }
                raw.chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect()
            }
            (FLOAT16, None) => self
                .int32_data
                .iter()
                .map(|&v| f16_to_f32(v as u16))
                .collect(),
            (other, _) => {
                return Err(format!(
                    "data type {other} is not supported (expected FLOAT or FLOAT16)"
                ))
            }
        };
        if values.len() != numel {
            return Err(format!(
                "{} values stored, dims {:?} need {numel}",
                values.len(),
                self.dims
            ));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
