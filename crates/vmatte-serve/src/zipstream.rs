//! A zip written front to back, for a download that starts at once: each
//! file stored as it is (PNG and EXR are compressed already), its CRC and
//! size in a data descriptor after it, ZIP64 records throughout so that
//! sequences past 4 GiB open. (The `zip` crate seeks back to write sizes,
//! which a response body cannot.)
//!
//! ```text
//!  [local header, data, descriptor] x N ─ central directory ─ zip64 end ─ locator ─ end
//! ```

use std::io::{self, Read, Write};

/// Version 4.5: ZIP64.
const VERSION: u16 = 45;
/// Bit 3: sizes in a data descriptor; bit 11: names are UTF-8.
const FLAGS: u16 = 0x0808;

struct Entry {
    name: Vec<u8>,
    crc: u32,
    size: u64,
    offset: u64,
}

pub struct ZipStream<W: Write> {
    out: W,
    written: u64,
    entries: Vec<Entry>,
}

impl<W: Write> ZipStream<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            entries: Vec::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Adds `name` with the bytes `data` gives.
    pub fn add(&mut self, name: &str, data: &mut impl Read) -> io::Result<()> {
        let offset = self.written;
        let name = name.as_bytes().to_vec();
        let mut h = Vec::with_capacity(64);
        h.extend(0x0403_4b50u32.to_le_bytes());
        h.extend(VERSION.to_le_bytes());
        h.extend(FLAGS.to_le_bytes());
        h.extend(0u16.to_le_bytes()); // stored
        h.extend(0u16.to_le_bytes()); // time
        h.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
        h.extend(0u32.to_le_bytes()); // crc: in the descriptor
        h.extend(u32::MAX.to_le_bytes()); // sizes: in the ZIP64 descriptor
        h.extend(u32::MAX.to_le_bytes());
        h.extend(u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
        h.extend(20u16.to_le_bytes()); // extra: ZIP64, sizes unknown yet
        h.extend(&name[..name.len().min(u16::MAX as usize)]);
        h.extend(1u16.to_le_bytes());
        h.extend(16u16.to_le_bytes());
        h.extend(0u64.to_le_bytes());
        h.extend(0u64.to_le_bytes());
        self.put(&h)?;
        let mut crc = crc32fast::Hasher::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            size += n as u64;
            self.put(&buf[..n])?;
        }
        let crc = crc.finalize();
        let mut d = Vec::with_capacity(24);
        d.extend(0x0807_4b50u32.to_le_bytes());
        d.extend(crc.to_le_bytes());
        d.extend(size.to_le_bytes());
        d.extend(size.to_le_bytes());
        self.put(&d)?;
        self.entries.push(Entry {
            name,
            crc,
            size,
            offset,
        });
        Ok(())
    }

    /// Writes the directory; the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        let start = self.written;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let mut c = Vec::with_capacity(80);
            c.extend(0x0201_4b50u32.to_le_bytes());
            c.extend((VERSION | (3 << 8)).to_le_bytes()); // made on Unix
            c.extend(VERSION.to_le_bytes());
            c.extend(FLAGS.to_le_bytes());
            c.extend(0u16.to_le_bytes());
            c.extend(0u16.to_le_bytes());
            c.extend(0x21u16.to_le_bytes());
            c.extend(e.crc.to_le_bytes());
            c.extend(u32::MAX.to_le_bytes());
            c.extend(u32::MAX.to_le_bytes());
            c.extend(
                u16::try_from(e.name.len())
                    .unwrap_or(u16::MAX)
                    .to_le_bytes(),
            );
            c.extend(28u16.to_le_bytes()); // extra: ZIP64 sizes and offset
            c.extend(0u16.to_le_bytes()); // comment
            c.extend(0u16.to_le_bytes()); // disk
            c.extend(0u16.to_le_bytes()); // internal attributes
            c.extend((0o100644u32 << 16).to_le_bytes()); // a regular file, rw-r--r--
            c.extend(u32::MAX.to_le_bytes());
            c.extend(&e.name[..e.name.len().min(u16::MAX as usize)]);
            c.extend(1u16.to_le_bytes());
            c.extend(24u16.to_le_bytes());
            c.extend(e.size.to_le_bytes());
            c.extend(e.size.to_le_bytes());
            c.extend(e.offset.to_le_bytes());
            self.put(&c)?;
        }
        let size = self.written - start;
        let zip64_end = self.written;
        let n = entries.len() as u64;
        let mut z = Vec::with_capacity(98);
        z.extend(0x0606_4b50u32.to_le_bytes());
        z.extend(44u64.to_le_bytes());
        z.extend((VERSION | (3 << 8)).to_le_bytes());
        z.extend(VERSION.to_le_bytes());
        z.extend(0u32.to_le_bytes());
        z.extend(0u32.to_le_bytes());
        z.extend(n.to_le_bytes());
        z.extend(n.to_le_bytes());
        z.extend(size.to_le_bytes());
        z.extend(start.to_le_bytes());
        z.extend(0x0706_4b50u32.to_le_bytes());
        z.extend(0u32.to_le_bytes());
        z.extend(zip64_end.to_le_bytes());
        z.extend(1u32.to_le_bytes());
        z.extend(0x0605_4b50u32.to_le_bytes());
        z.extend(0u16.to_le_bytes());
        z.extend(0u16.to_le_bytes());
        z.extend(u16::MAX.to_le_bytes());
        z.extend(u16::MAX.to_le_bytes());
        z.extend(u32::MAX.to_le_bytes());
        z.extend(u32::MAX.to_le_bytes());
        z.extend(0u16.to_le_bytes());
        self.put(&z)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this writes, the `zip` crate reads back whole.
    #[test]
    fn the_zip_crate_reads_it_back() {
        let mut z = ZipStream::new(Vec::new());
        z.add("000000.png", &mut &b"first frame"[..]).unwrap();
        z.add("000001.png", &mut &[7u8; 100_000][..]).unwrap();
        let bytes = z.finish().unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        let mut text = String::new();
        archive
            .by_name("000000.png")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "first frame");
        let mut second = Vec::new();
        archive
            .by_index(1)
            .unwrap()
            .read_to_end(&mut second)
            .unwrap();
        assert_eq!(second, vec![7u8; 100_000]);
    }
}
