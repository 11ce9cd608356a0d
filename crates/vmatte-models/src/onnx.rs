//! Import of the RVM authors' ONNX export (`rvm_mobilenetv3_fp32.onnx`,
//! opset 12) into vmatte's weight layout, without an ONNX runtime or a
//! protobuf dependency.
//!
//! In that export every Conv + BatchNorm pair is already fused into one Conv
//! with a bias, and the fused weights carry exporter-generated names (plain
//! numbers such as `824`), so they are matched to the official PyTorch keys
//! by graph position: the exporter writes nodes in the execution order of
//! the PyTorch forward pass, and every Conv is checked against the expected
//! shape, groups, stride, dilation and padding before it is accepted.

mod model;
pub mod wire;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use model::{Graph, Node};

/// What follows a conv in the official model, which decides its bias key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bias {
    /// A BatchNorm follows; vmatte stores the fused conv with a bias.
    FusedBn,
    /// The conv has its own bias in the official checkpoint.
    Own,
    /// No bias and no BatchNorm (`aspp.aspp2.1`, `refiner.box_filter`).
    None,
}

#[derive(Debug, Clone)]
struct ConvSpec {
    /// Official key prefix, e.g. `backbone.features.0.0`.
    key: String,
    out_ch: usize,
    in_ch: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
    bias: Bias,
}

impl ConvSpec {
    fn weight_shape(&self) -> Vec<usize> {
        vec![
            self.out_ch,
            self.in_ch / self.groups,
            self.kernel,
            self.kernel,
        ]
    }
}

fn make_divisible(v: usize, divisor: usize) -> usize {
    let new_v = ((v + divisor / 2) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v as f64 {
        new_v + divisor
    } else {
        new_v
    }
}

/// Every Conv node of the RVM MobileNetV3 graph in forward order (85 with
/// the four uses of the shared box filter).
fn rvm_mobilenetv3_convs() -> Vec<ConvSpec> {
    let mut v = Vec::with_capacity(85);
    let mut conv = |key: String, out_ch, in_ch, kernel, stride, dilation, groups, bias| {
        v.push(ConvSpec {
            key,
            out_ch,
            in_ch,
            kernel,
            stride,
            dilation,
            groups,
            bias,
        })
    };
    conv(
        "backbone.features.0.0".into(),
        16,
        3,
        3,
        2,
        1,
        1,
        Bias::FusedBn,
    );
    // (in, kernel, expanded, out, squeeze-excite, stride, dilation)
    const BLOCKS: [(usize, usize, usize, usize, bool, usize, usize); 15] = [
        (16, 3, 16, 16, false, 1, 1),
        (16, 3, 64, 24, false, 2, 1),
        (24, 3, 72, 24, false, 1, 1),
        (24, 5, 72, 40, true, 2, 1),
        (40, 5, 120, 40, true, 1, 1),
        (40, 5, 120, 40, true, 1, 1),
        (40, 3, 240, 80, false, 2, 1),
        (80, 3, 200, 80, false, 1, 1),
        (80, 3, 184, 80, false, 1, 1),
        (80, 3, 184, 80, false, 1, 1),
        (80, 3, 480, 112, true, 1, 1),
        (112, 3, 672, 112, true, 1, 1),
        (112, 5, 672, 160, true, 1, 2),
        (160, 5, 960, 160, true, 1, 2),
        (160, 5, 960, 160, true, 1, 2),
    ];
    for (n, &(cin, k, exp, cout, se, stride, dil)) in BLOCKS.iter().enumerate() {
        let p = format!("backbone.features.{}.block", n + 1);
        let mut i = 0;
        if exp != cin {
            conv(format!("{p}.{i}.0"), exp, cin, 1, 1, 1, 1, Bias::FusedBn);
            i += 1;
        }
        conv(
            format!("{p}.{i}.0"),
            exp,
            exp,
            k,
            stride,
            dil,
            exp,
            Bias::FusedBn,
        );
        i += 1;
        if se {
            let sq = make_divisible(exp / 4, 8);
            conv(format!("{p}.{i}.fc1"), sq, exp, 1, 1, 1, 1, Bias::Own);
            conv(format!("{p}.{i}.fc2"), exp, sq, 1, 1, 1, 1, Bias::Own);
            i += 1;
        }
        conv(format!("{p}.{i}.0"), cout, exp, 1, 1, 1, 1, Bias::FusedBn);
    }
    conv(
        "backbone.features.16.0".into(),
        960,
        160,
        1,
        1,
        1,
        1,
        Bias::FusedBn,
    );
    conv("aspp.aspp1.0".into(), 128, 960, 1, 1, 1, 1, Bias::FusedBn);
    conv("aspp.aspp2.1".into(), 128, 960, 1, 1, 1, 1, Bias::None);
    // ConvGRU(c): ih 2c -> 2c, hh 2c -> c, both 3x3 with bias.
    conv(
        "decoder.decode4.gru.ih.0".into(),
        128,
        128,
        3,
        1,
        1,
        1,
        Bias::Own,
    );
    conv(
        "decoder.decode4.gru.hh.0".into(),
        64,
        128,
        3,
        1,
        1,
        1,
        Bias::Own,
    );
    // decode3..1: conv3x3 over [upsampled x, skip feature, pooled image].
    for (d, cin, cout) in [
        (3usize, 128 + 40 + 3, 80usize),
        (2, 80 + 24 + 3, 40),
        (1, 40 + 16 + 3, 32),
    ] {
        conv(
            format!("decoder.decode{d}.conv.0"),
            cout,
            cin,
            3,
            1,
            1,
            1,
            Bias::FusedBn,
        );
        let p = format!("decoder.decode{d}.gru");
        let c = cout / 2;
        conv(format!("{p}.ih.0"), 2 * c, 2 * c, 3, 1, 1, 1, Bias::Own);
        conv(format!("{p}.hh.0"), c, 2 * c, 3, 1, 1, 1, Bias::Own);
    }
    conv(
        "decoder.decode0.conv.0".into(),
        16,
        32 + 3,
        3,
        1,
        1,
        1,
        Bias::FusedBn,
    );
    conv(
        "decoder.decode0.conv.3".into(),
        16,
        16,
        3,
        1,
        1,
        1,
        Bias::FusedBn,
    );
    conv("project_mat.conv".into(), 4, 16, 1, 1, 1, 1, Bias::Own);
    // Deep guided filter: box(x), box(y), box(x*y), box(x*x) share one weight.
    for _ in 0..4 {
        conv("refiner.box_filter".into(), 4, 4, 3, 1, 1, 4, Bias::None);
    }
    conv("refiner.conv.0".into(), 16, 24, 1, 1, 1, 1, Bias::FusedBn);
    conv("refiner.conv.3".into(), 16, 16, 1, 1, 1, 1, Bias::FusedBn);
    conv("refiner.conv.6".into(), 4, 16, 1, 1, 1, 1, Bias::Own);
    v
}

/// Where the constant tensors of the graph live: initializers and the
/// outputs of Constant nodes, looked through Identity nodes.
struct Constants<'g, 'a> {
    initializers: HashMap<&'g str, &'g model::Tensor<'a>>,
    producers: HashMap<&'g str, &'g Node<'a>>,
}

impl<'g, 'a> Constants<'g, 'a> {
    fn new(graph: &'g Graph<'a>) -> Self {
        let initializers = graph
            .initializers
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut producers = HashMap::new();
        for node in &graph.nodes {
            for out in &node.outputs {
                producers.insert(out.as_str(), node);
            }
        }
        Self {
            initializers,
            producers,
        }
    }

    /// The constant tensor behind `name`, or None when it is computed.
    fn tensor(&self, name: &str) -> Option<&'g model::Tensor<'a>> {
        let mut name = name;
        for _ in 0..16 {
            if let Some(t) = self.initializers.get(name) {
                return Some(t);
            }
            let node = self.producers.get(name)?;
            match node.op_type.as_str() {
                "Constant" => return node.attr("value").and_then(|a| a.t.as_ref()),
                "Identity" => name = node.inputs.first()?,
                _ => return None,
            }
        }
        None
    }

    fn values(&self, name: &str) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
        let t = self
            .tensor(name)
            .ok_or_else(|| format!("'{name}' is not an initializer or a Constant"))?;
        let shape = t.shape().map_err(|e| format!("'{name}': {e}"))?;
        let values = t.to_f32().map_err(|e| format!("'{name}': {e}"))?;
        Ok((shape, values))
    }
}

fn ints_attr(node: &Node, name: &str, default: Vec<i64>) -> Vec<i64> {
    node.attr(name).map(|a| a.ints.clone()).unwrap_or(default)
}

/// Checks the attributes of Conv node `pos` against `spec`.
fn check_conv_attrs(node: &Node, pos: usize, spec: &ConvSpec) -> std::result::Result<(), String> {
    let at = || format!("Conv #{pos} ('{}', expected {})", node.name, spec.key);
    let group = node.attr("group").and_then(|a| a.i).unwrap_or(1);
    if group != spec.groups as i64 {
        return Err(format!("{}: group {group}, expected {}", at(), spec.groups));
    }
    let s = spec.stride as i64;
    let d = spec.dilation as i64;
    let p = d * (spec.kernel as i64 - 1) / 2;
    let strides = ints_attr(node, "strides", vec![1, 1]);
    let dilations = ints_attr(node, "dilations", vec![1, 1]);
    let pads = ints_attr(node, "pads", vec![0; 4]);
    if strides != [s, s] {
        return Err(format!(
            "{}: strides {strides:?}, expected [{s}, {s}]",
            at()
        ));
    }
    if dilations != [d, d] {
        return Err(format!(
            "{}: dilations {dilations:?}, expected [{d}, {d}]",
            at()
        ));
    }
    if pads != [p; 4] {
        return Err(format!(
            "{}: pads {pads:?}, expected [{p}, {p}, {p}, {p}]",
            at()
        ));
    }
    if let Some(auto) = node.attr("auto_pad").and_then(|a| a.s) {
        if auto != b"NOTSET" {
            return Err(format!(
                "{}: auto_pad {}, expected explicit pads",
                at(),
                String::from_utf8_lossy(auto)
            ));
        }
    }
    if let Some(k) = node.attr("kernel_shape") {
        let kk = spec.kernel as i64;
        if k.ints != [kk, kk] {
            return Err(format!(
                "{}: kernel_shape {:?}, expected [{kk}, {kk}]",
                at(),
                k.ints
            ));
        }
    }
    Ok(())
}

/// Checks that the input of the first conv is `(x - mean) / std` with the
/// ImageNet constants, i.e. that the normalisation was not folded into the
/// first conv's weights (vmatte normalises explicitly).
fn check_normalisation(consts: &Constants, first_conv: &Node) -> std::result::Result<(), String> {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let is_const = |name: &str, want: &[f32; 3]| {
        consts.values(name).ok().is_some_and(|(_, v)| {
            v.len() == 3 && v.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6)
        })
    };
    let missing = || {
        "the ImageNet normalisation (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] \
         is not right before the first Conv; this importer only accepts exports that \
         normalise explicitly"
            .to_string()
    };
    let input = first_conv.inputs.first().ok_or_else(missing)?;
    let div = consts.producers.get(input.as_str()).ok_or_else(missing)?;
    if div.op_type != "Div" || div.inputs.len() != 2 || !is_const(&div.inputs[1], &STD) {
        return Err(missing());
    }
    let sub = consts
        .producers
        .get(div.inputs[0].as_str())
        .ok_or_else(missing)?;
    if sub.op_type != "Sub" || sub.inputs.len() != 2 || !is_const(&sub.inputs[1], &MEAN) {
        return Err(missing());
    }
    Ok(())
}

fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}

/// Maps the Conv nodes of `graph` to official keys; returns
/// `key -> (shape, values)` in vmatte's fused layout.
#[allow(clippy::type_complexity)]
fn map_graph(
    graph: &Graph,
) -> std::result::Result<HashMap<String, (Vec<usize>, Vec<f32>)>, String> {
    let consts = Constants::new(graph);
    let specs = rvm_mobilenetv3_convs();
    let convs: Vec<&Node> = graph.nodes.iter().filter(|n| n.op_type == "Conv").collect();
    let mut out: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    // Official key -> ONNX name of the weight it was taken from.
    let mut sources: HashMap<String, String> = HashMap::new();

    for (pos, (node, spec)) in convs.iter().zip(&specs).enumerate() {
        let at = || format!("Conv #{pos} ('{}', expected {})", node.name, spec.key);
        let wname = node
            .inputs
            .get(1)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{}: no weight input", at()))?;
        let (wshape, w) = consts
            .values(wname)
            .map_err(|e| format!("{}: weight {e}", at()))?;
        let expected = spec.weight_shape();
        if wshape != expected {
            return Err(format!(
                "{}: weight '{wname}' has shape {}, expected {}",
                at(),
                shape_str(&wshape),
                shape_str(&expected)
            ));
        }
        check_conv_attrs(node, pos, spec)?;
        let wkey = format!("{}.weight", spec.key);
        // Parameters the exporter did not fuse keep their PyTorch names:
        // those must agree with the position.
        if wname.ends_with(".weight") && *wname != wkey {
            return Err(format!("{}: weight is named '{wname}'", at()));
        }
        let bias_name = node.inputs.get(2).filter(|n| !n.is_empty());
        let bias = match bias_name {
            Some(bname) => {
                let (bshape, b) = consts
                    .values(bname)
                    .map_err(|e| format!("{}: bias {e}", at()))?;
                if bshape != [spec.out_ch] {
                    return Err(format!(
                        "{}: bias '{bname}' has shape {}, expected [{}]",
                        at(),
                        shape_str(&bshape),
                        spec.out_ch
                    ));
                }
                if bname.ends_with(".bias") && *bname != format!("{}.bias", spec.key) {
                    return Err(format!("{}: bias is named '{bname}'", at()));
                }
                Some(b)
            }
            None => None,
        };
        if let Some(prev) = sources.get(&wkey) {
            // A shared weight (the refiner's box filter): every use must
            // carry the same values.
            if prev != wname && out[&wkey].1 != w {
                return Err(format!(
                    "{}: weight '{wname}' differs from '{prev}' used earlier for the same parameter",
                    at()
                ));
            }
        } else {
            sources.insert(wkey.clone(), wname.clone());
            out.insert(wkey, (wshape, w));
        }
        let bkey = format!("{}.bias", spec.key);
        match (spec.bias, bias) {
            (Bias::FusedBn | Bias::Own, b) => {
                // An absent bias is a zero bias (a fused BatchNorm whose
                // shift happened to cancel, or an exporter that dropped it).
                let b = b.unwrap_or_else(|| vec![0.0; spec.out_ch]);
                out.insert(bkey, (vec![spec.out_ch], b));
            }
            (Bias::None, None) => {}
            (Bias::None, Some(b)) => {
                if b.iter().any(|&x| x != 0.0) {
                    return Err(format!(
                        "{}: has a non-zero bias, but the official model has none there",
                        at()
                    ));
                }
            }
        }
    }
    if convs.len() != specs.len() {
        return Err(format!(
            "found {} Conv nodes, RVM MobileNetV3 has {}; is this the MobileNetV3 export?",
            convs.len(),
            specs.len()
        ));
    }
    check_normalisation(&consts, convs[0])?;
    Ok(out)
}

/// Reads the ONNX export and returns RVM MobileNetV3 weights under the
/// official key names, in vmatte's fused form: every conv that had a
/// BatchNorm after it appears as `<conv>.weight` and `<conv>.bias` (e.g.
/// `backbone.features.0.0.weight`, `backbone.features.0.0.bias`), and there
/// are no BatchNorm keys at all; convs without BatchNorm keep their official
/// keys (`...fc1.weight`, `...fc1.bias`, `aspp.aspp2.1.weight`,
/// `project_mat.conv.weight/bias`, `refiner.box_filter.weight`,
/// `refiner.conv.6.weight/bias`, GRU `ih`/`hh` weight/bias). The export has
/// no `project_seg`. All tensors are f32 on the CPU.
pub fn import_rvm_mobilenetv3(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    let onnx_err = |reason: String| Error::Onnx {
        path: path.to_path_buf(),
        reason,
    };
    let graph = model::parse_model(&bytes).map_err(onnx_err)?;
    let mapped = map_graph(&graph).map_err(onnx_err)?;
    let mut weights = HashMap::with_capacity(mapped.len());
    for (key, (shape, values)) in mapped {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(onnx_err(format!(
                "{key}: value {} is not finite",
                values[i]
            )));
        }
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        weights.insert(key, t);
    }
    Ok(weights)
}
