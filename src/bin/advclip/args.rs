//! The command line's shape: the subcommands and the arguments several of them share.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;

#[derive(Parser)]
#[command(name = "advclip", version, about = "OpenAI CLIP in Burn, and the AdvCLIP adversarial patch")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print projected, L2-normalised CLIP embeddings of images and texts
    Embed(commands::embed::EmbedArgs),
    /// Zero-shot classify images against a comma-separated label list
    Classify(commands::classify::ClassifyArgs),
    /// Print the OpenAI BPE token ids of texts (unpadded, SOT first, EOT last, truncated to 77)
    Tokenize(commands::tokenize::TokenizeArgs),
    /// Train an adversarial patch (AdvCLIP universal, or targeted) and write PATCH.png + PATCH.json
    Train(commands::train::TrainArgs),
    /// Measure a patch on a dataset: clean/patched accuracy, fooling rate, targeted success, retrieval; after defences
    Eval(commands::eval::EvalArgs),
    /// Paste a patch onto images where its sidecar says, and write them to a folder
    Apply(commands::apply::ApplyArgs),
    /// The main job, offline: unseen shape scenes classified by the mini CLIP, then again wearing a patch
    Demo(commands::demo::DemoArgs),
    /// Write an ImageFolder of the shapes world (36 classes "<colour> <shape>", captions in captions.jsonl)
    Synth(commands::synth::SynthArgs),
    /// Train the mini CLIP from scratch on the shapes world (contrastive loss, learnable temperature)
    Pretrain(commands::pretrain::PretrainArgs),
    /// Copy a CLIP checkpoint with its float tensors stored as f16 (half the size; loads as f32)
    Convert(commands::convert::ConvertArgs),
    /// Serve the browser app (www/, the wasm package in pkg/, assets/) on 127.0.0.1; build pkg/ with scripts/build-web
    Serve(commands::serve::ServeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceFlag {
    /// Pure-Rust CPU backend (flex)
    Cpu,
    /// wgpu: Vulkan, Metal or DX12 (needs the `wgpu` feature)
    Wgpu,
    /// NVIDIA CUDA (needs the `cuda` feature)
    Cuda,
}

/// Images per forward pass where a command does not say otherwise.
pub const DEFAULT_FORWARD_BATCH: usize = 16;

#[derive(clap::Args)]
pub struct ModelArgs {
    /// A Hugging Face CLIP folder (config.json + model.safetensors) or a lone .safetensors file
    #[arg(long, value_name = "DIR|FILE")]
    pub weights: PathBuf,
    /// Where to run the model
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceFlag,
    /// Images per forward pass (training: per step) [default: 16; train: 8]
    #[arg(long)]
    pub batch: Option<usize>,
}

impl ModelArgs {
    pub fn forward_batch(&self) -> usize {
        self.batch.unwrap_or(DEFAULT_FORWARD_BATCH)
    }
}
