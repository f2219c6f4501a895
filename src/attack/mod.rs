//! The AdvCLIP attack and the targeted patch: placement, generator, discriminator, losses, training runs, metrics.

pub mod advclip;
pub mod camera;
mod dcgan_conv;
pub mod discriminator;
pub mod generator;
pub mod losses;
pub mod metrics;
pub mod placement;
pub mod printability;
pub mod probe;
pub mod run;
pub mod targeted;

pub use advclip::{AdvClipConfig, AdvClipStep, AdvClipTrainer};
pub use losses::{
    LossTerm, LossWeights, embedding_deviation_loss, info_nce, topology_deviation, topology_deviation_loss,
    topology_graph,
};
pub use placement::{
    DEFAULT_AREA_FRACTION, Paste, PatchPlacement, PatchTransform, TransformRanges, normalize_pixels, paste_patch,
};
pub use printability::{Printability, non_printability_score};
pub use targeted::{TargetedConfig, TargetedPatchTrainer, TrainedSpot};
#[cfg(not(target_arch = "wasm32"))]
pub mod defence;
#[cfg(not(target_arch = "wasm32"))]
pub mod evaluate;
pub mod patch_file;
pub use run::{AttackMode, PatchRun, RunSettings, StepReport, TrainingImages};
