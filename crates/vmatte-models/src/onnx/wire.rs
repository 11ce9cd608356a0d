//! A minimal reader for the protobuf wire format, enough to decode ONNX
//! models without a protobuf dependency.
//!
//! Every read is bounds-checked: malformed input yields an error string,
//! never a panic. Values borrow from the input buffer, so the multi-megabyte
//! `raw_data` of weight tensors is never copied while parsing.

/// One decoded field value. Groups (wire types 3 and 4) are rejected, as
/// ONNX never uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: a string, bytes, an embedded message or a packed
    /// repeated field.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// Reads a base-128 varint at `*pos` and advances `pos` past it.
///
/// Fails on a truncated varint and on one that does not fit in 64 bits
/// (more than 10 bytes, or a 10th byte above 1).
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| format!("truncated varint at byte {}", *pos))?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return Err(format!("varint overflows 64 bits at byte {}", *pos - 1));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(format!("varint longer than 10 bytes at byte {}", *pos))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8], String> {
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= buf.len())
        .ok_or_else(|| {
            format!(
                "field of {len} bytes at byte {} runs past the end of its {}-byte message",
                *pos,
                buf.len()
            )
        })?;
    let out = &buf[*pos..end];
    *pos = end;
    Ok(out)
}

/// Iterator over the `(field number, value)` pairs of one message. After the
/// first error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Result<(u32, Value<'a>), String> {
        let at = self.pos;
        let tag = read_varint(self.buf, &mut self.pos)?;
        let field = tag >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(format!("invalid field number {field} at byte {at}"));
        }
        let value = match tag & 7 {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => {
                let b = take(self.buf, &mut self.pos, 8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let len = usize::try_from(len)
                    .map_err(|_| format!("length {len} too large at byte {at}"))?;
                Value::Bytes(take(self.buf, &mut self.pos, len)?)
            }
            5 => {
                let b = take(self.buf, &mut self.pos, 4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            w => return Err(format!("unsupported wire type {w} at byte {at}")),
        };
        Ok((field as u32, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_field();
        self.failed = item.is_err();
        Some(item)
    }
}

impl<'a> Value<'a> {
    /// A varint field as an `int64` (two's complement, as protobuf encodes
    /// negative `int64` values).
    pub fn as_i64(self) -> Result<i64, String> {
        match self {
            Value::Varint(v) => Ok(v as i64),
            other => Err(format!("expected a varint, found {other:?}")),
        }
    }

    pub fn as_bytes(self) -> Result<&'a [u8], String> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => Err(format!(
                "expected a length-delimited field, found {other:?}"
            )),
        }
    }

    pub fn as_string(self) -> Result<String, String> {
        let b = self.as_bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| "string field is not valid UTF-8".to_string())
    }

    pub fn as_f32(self) -> Result<f32, String> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            other => Err(format!("expected a fixed32 float, found {other:?}")),
        }
    }

    /// Appends the value(s) of a repeated `int64`/`int32` field, packed or not.
    pub fn push_i64s(self, out: &mut Vec<i64>) -> Result<(), String> {
        match self {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(b) => {
                let mut pos = 0;
                while pos < b.len() {
                    out.push(read_varint(b, &mut pos)? as i64);
                }
            }
            other => return Err(format!("expected repeated varints, found {other:?}")),
        }
        Ok(())
    }

    /// Appends the value(s) of a repeated `float` field, packed or not.
    pub fn push_f32s(self, out: &mut Vec<f32>) -> Result<(), String> {
        match self {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Bytes(b) => {
                if b.len() % 4 != 0 {
                    return Err(format!("packed floats of {} bytes", b.len()));
                }
                out.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
                );
            }
            other => return Err(format!("expected repeated floats, found {other:?}")),
        }
        Ok(())
    }
}
