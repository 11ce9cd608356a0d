//! Which device a model runs on, as the user names it: `cpu`, `cuda` (the
//! first GPU) or `cuda:N`. Parsed once where settings are read; everything
//! after works with the enum.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// The CUDA device with this index (NVML numbers GPUs the same way
    /// when `CUDA_DEVICE_ORDER=PCI_BUS_ID`, as the launcher sets).
    Cuda(u32),
}

impl DeviceSpec {
    pub fn is_cpu(self) -> bool {
        self == Self::Cpu
    }

    /// The GPU's index, for NVML; `None` for the CPU.
    pub fn gpu_index(self) -> Option<u32> {
        match self {
            Self::Cpu => None,
            Self::Cuda(n) => Some(n),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device '{s}'; use cpu, cuda or cuda:N")),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_name_gpus() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(DeviceSpec::Cuda(3).gpu_index(), Some(3));
        assert_eq!(DeviceSpec::Cpu.gpu_index(), None);
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
        for bad in ["cuda:x", "gpu", "tpu", "cuda:-1", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains("cpu, cuda or cuda:N"), "{err}");
        }
    }
}
