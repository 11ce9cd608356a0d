//! GVM's UNet and VAE against the fp32 references computed with diffusers
//! (../shared/fixtures/gvm, README there), at the README's tolerances:
//! 1e-4 absolute for outputs and activations, 1e-4 relative for the VAE
//! moments (they reach ±33).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use vmatte_models::gvm::{layers::sinusoidal_embedding, Gvm, LoraChoice, TIMESTEP};

fn gvm_dir() -> PathBuf {
    vmatte_testkit::fixture("gvm")
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(gvm_dir().join(name), &Device::Cpu).unwrap()
}

fn model(lora: LoraChoice) -> Gvm {
    Gvm::load(&gvm_dir().join("weights"), &lora, &Device::Cpu, DType::F32).unwrap()
}

/// Largest |a - b| / max(1, |b|·rel_scale) over the tensors, asserted under
/// `tol`.
fn assert_close(name: &str, got: &Tensor, want: &Tensor, tol: f32, relative: bool) {
    assert_eq!(got.dims(), want.dims(), "{name}: shape");
    let g = got
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| {
            let d = (a - b).abs();
            if relative {
                d / b.abs().max(1.0)
            } else {
                d
            }
        })
        .fold(0f32, f32::max);
    assert!(worst <= tol, "{name}: max difference {worst:e} > {tol:e}");
    eprintln!("{name}: max difference {worst:e}");
}

fn traced_unet(gvm: &Gvm, input: &Tensor) -> (Tensor, HashMap<String, Tensor>) {
    let mut acts = HashMap::new();
    let out = gvm
        .unet
        .forward_traced(input, TIMESTEP, &mut |name, t| {
            acts.insert(name.to_string(), t.clone());
        })
        .unwrap();
    (out, acts)
}

#[test]
fn unet_matches_diffusers_with_and_without_lora() {
    let r = reference("reference_unet.safetensors");
    let input = &r["input"];

    let base = model(LoraChoice::Off);
    assert!(base.lora.is_none());
    let proj = sinusoidal_embedding(&[TIMESTEP], 32, &Device::Cpu).unwrap();
    assert_close("time_proj", &proj, &r["act.no_lora.time_proj"], 1e-6, false);
    let temb = base.unet.time_embedding(TIMESTEP, input).unwrap();
    assert_close(
        "time_embedding",
        &temb,
        &r["act.no_lora.time_embedding"],
        1e-4,
        false,
    );
    let (out, acts) = traced_unet(&base, input);
    for name in [
        "conv_in",
        "down_blocks.0",
        "down_blocks.1",
        "down_blocks.2",
        "down_blocks.3",
        "mid_block",
        "up_blocks.0",
        "up_blocks.1",
        "up_blocks.2",
        "up_blocks.3",
        "conv_out",
    ] {
        assert_close(
            name,
            &acts[name],
            &r[&format!("act.no_lora.{name}")],
            1e-4,
            false,
        );
    }
    assert_close("out.no_lora", &out, &r["out.no_lora"], 1e-4, false);

    let merged = model(LoraChoice::Auto);
    assert!(
        merged.lora.is_some(),
        "the fixture's LoRA is found beside the UNet"
    );
    let (out, acts) = traced_unet(&merged, input);
    for name in ["conv_in", "mid_block", "conv_out"] {
        assert_close(
            name,
            &acts[name],
            &r[&format!("act.lora.{name}")],
            1e-4,
            false,
        );
    }
    assert_close("out.lora", &out, &r["out.lora"], 1e-4, false);
    // The LoRA matters: the merged output is far from the base one.
    let apart = (&out - &r["out.no_lora"])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(apart.to_scalar::<f32>().unwrap() > 0.1);
}

#[test]
fn vae_encode_and_temporal_decode_match_diffusers() {
    let r = reference("reference_vae.safetensors");
    let gvm = model(LoraChoice::Off);
    let u8s = r["enc.input_u8"].to_dtype(DType::F32).unwrap();
    // (u8 / 255) * 2 - 1, in the reference's f32 operations.
    let x = ((u8s / 255.0).unwrap() * 2.0).unwrap() - 1.0;
    let x = x.unwrap();
    let moments = gvm.vae.encoder.moments(&x).unwrap();
    assert_close("quant_conv", &moments, &r["enc.act.quant_conv"], 1e-4, true);
    let latent = gvm.encode(&x).unwrap();
    assert_close(
        "latent_scaled",
        &latent,
        &r["enc.latent_scaled"],
        1e-4,
        false,
    );

    let z = &r["dec.z"];
    let mut acts = HashMap::new();
    let full = gvm
        .vae
        .decoder
        .forward_traced(z, &mut |name, t| {
            acts.insert(name.to_string(), t.clone());
        })
        .unwrap();
    let sub = |t: &Tensor, n: usize| {
        let (_, _, h, w) = t.dims4().unwrap();
        let rows = Tensor::arange_step(0u32, h as u32, n as u32, &Device::Cpu).unwrap();
        let cols = Tensor::arange_step(0u32, w as u32, n as u32, &Device::Cpu).unwrap();
        t.index_select(&rows, 2)
            .unwrap()
            .index_select(&cols, 3)
            .unwrap()
    };
    assert_close(
        "mid_block",
        &acts["decoder.mid_block"],
        &r["dec.act.decoder.mid_block"],
        1e-4,
        false,
    );
    for (name, n) in [
        ("up_blocks.0", 2),
        ("up_blocks.1", 4),
        ("up_blocks.2", 8),
        ("up_blocks.3", 8),
        ("conv_out", 4),
    ] {
        let got = sub(&acts[&format!("decoder.{name}")], n);
        assert_close(
            name,
            &got,
            &r[&format!("dec.act.decoder.{name}.s{n}")],
            1e-4,
            false,
        );
    }
    assert_close("decode (5 frames)", &full, &r["dec.out_full"], 1e-4, false);

    let chunks: Vec<Tensor> = [(0, 2), (2, 2), (4, 1)]
        .iter()
        .map(|&(s, n)| gvm.vae.decode(&z.i(s..s + n).unwrap()).unwrap())
        .collect();
    let chunked = Tensor::cat(&chunks, 0).unwrap();
    assert_close(
        "decode (chunks of 2)",
        &chunked,
        &r["dec.out_chunk2"],
        1e-4,
        false,
    );
}
