//! Evaluating a patch on a dataset: zero-shot clean/patched accuracy, fooling and targeted success rates, retrieval
//! when captions exist, each optionally after a defence.

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::defence::Defence;
use super::metrics::{RetrievalMetrics, ZeroShotMetrics, retrieval_metrics, zero_shot_metrics};
use super::placement::{Paste, PatchPlacement, PatchTransform, TransformRanges, normalize_pixels, paste_patch};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::host::read_f32 as read;
use crate::model::Clip;
use crate::tokenizer::Tokenizer;
use crate::zeroshot::{ZeroShotClassifier, argmax};

/// The numbers for one condition (no defence, or one defence).
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub defence: Option<String>,
    #[serde(flatten)]
    pub zero_shot: ZeroShotMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalReport>,
    /// The authors' frozen-feature MLP probe (half the labelled images train it, half test it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_probe: Option<super::probe::ProbeMetrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetrievalReport {
    pub image_to_text_clean: RetrievalMetrics,
    pub image_to_text_patched: RetrievalMetrics,
    pub text_to_image_clean: RetrievalMetrics,
    pub text_to_image_patched: RetrievalMetrics,
}

/// Where the patch goes on each evaluated image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalSpot {
    /// At its sidecar's placement, pixel for pixel.
    Fixed,
    /// Anywhere: per image a fresh seeded draw of position, side (0.8-1.2x the patch's own) and rotation (up to 22.5
    /// degrees), the distribution a patch trained for any spot is trained on; the rotated patch stays whole inside
    /// the image. The same seed gives every image the same draw whatever the batch size.
    Random { seed: u64 },
}

/// One evaluated image, for a per-image listing: its truth and its top label clean and at each spot (no defence).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageOutcome {
    /// The image's path (`Item::name`).
    pub name: String,
    /// Its label's index among the labels, when it has one that is among them.
    pub truth: Option<usize>,
    /// The top label's index on the clean image.
    pub clean: usize,
    /// Per spot, in `EvalOptions::spots` order: the top label's index with the patch, and the draw that placed it
    /// (random spots only).
    pub patched: Vec<(usize, Option<PatchTransform>)>,
}

/// What `evaluate_patch` measured.
pub struct Evaluation {
    /// Per spot, the undefended report and then one per defence.
    pub reports: Vec<Vec<EvalReport>>,
    /// Images that could not be read, skipped.
    pub skipped: usize,
    /// Every image read, in the dataset's order.
    pub images: Vec<ImageOutcome>,
}

impl EvalSpot {
    /// Where a random spot puts the patch on the `index`-th image read (a seeded draw of its own, so the same
    /// whatever the batch size); `None` for the fixed spot.
    pub fn draw(&self, index: usize, placement: &PatchPlacement) -> Option<PatchTransform> {
        let EvalSpot::Random { seed } = *self else { return None };
        let ranges = TransformRanges::around_area(placement.area_fraction());
        let mut rng = crate::rng::SeededRng::new(seed, &format!("eval spot {index}"));
        Some(PatchTransform::sample(placement.image_size, &ranges, &mut rng))
    }
}

pub struct EvalOptions<'a> {
    pub labels: &'a [String],
    /// Every place to measure the patch at, in one pass over the data (at least one).
    pub spots: &'a [EvalSpot],
    pub template: &'a str,
    pub target: Option<usize>,
    pub defences: &'a [Defence],
    pub batch_size: usize,
    pub limit: Option<usize>,
    pub probe: bool,
}

/// Evaluates `patch` ([3, p, p] pixels in [0, 1], host) at each of `options.spots` on `dataset` (with no patch, only
/// the clean numbers mean anything: the "patched" images are the clean ones): one list of reports per spot, the
/// images read and their clean predictions computed once for all, and each image's outcome; unreadable images are
/// skipped and counted.
pub fn evaluate_patch(
    model: &Clip,
    dataset: &Dataset,
    patch: Option<(&[f32], &PatchPlacement)>,
    options: &EvalOptions,
    device: &Device,
    mut on_batch: impl FnMut(usize),
) -> Result<Evaluation> {
    let size = model.config().vision.image_size;
    if options.spots.is_empty() {
        return Err(Error::invalid("no spot to evaluate the patch at"));
    }
    if let Some((_, placement)) = patch
        && placement.image_size != size
    {
        return Err(Error::invalid(format!(
            "the patch was made for {} px inputs; this model takes {size} px",
            placement.image_size
        )));
    }
    let tokenizer = Tokenizer::new();
    let head = ZeroShotClassifier::new(model, &tokenizer, options.labels, &[options.template.to_string()])?;
    let patch = patch.map(|(pixels, placement)| {
        (
            Tensor::<3>::from_data(TensorData::new(pixels.to_vec(), [3, placement.size, placement.size]), device),
            placement,
        )
    });
    let conditions: Vec<Option<&Defence>> = std::iter::once(None).chain(options.defences.iter().map(Some)).collect();
    let n_items = options.limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    let mut skipped = 0;
    let mut truth = Vec::new();
    let mut names = Vec::new();
    let mut captions = Vec::new();
    // Per condition: clean predictions and embeddings; per spot and condition, the patched ones.
    let mut clean_pred = vec![Vec::new(); conditions.len()];
    let mut clean_emb = vec![Vec::new(); conditions.len()];
    let mut adv_pred = vec![vec![Vec::new(); conditions.len()]; options.spots.len()];
    let mut adv_emb = vec![vec![Vec::new(); conditions.len()]; options.spots.len()];
    let mut start = 0;
    while start < n_items {
        let end = (start + options.batch_size.max(1)).min(n_items);
        let mut images = Vec::new();
        for item in &dataset.items[start..end] {
            match item.load().and_then(|img| crate::preprocess::unit_pixels(&img, size as u32)) {
                Ok(p) => {
                    images.push(p);
                    truth.push(
                        item.label
                            .and_then(|l| dataset.class_names.get(l))
                            .and_then(|name| options.labels.iter().position(|x| x == name)),
                    );
                    captions.push(item.caption.clone());
                    names.push(item.name());
                }
                Err(_) => skipped += 1,
            }
        }
        on_batch(end - start);
        start = end;
        if images.is_empty() {
            continue;
        }
        let b = images.len();
        let clean = Tensor::<4>::from_data(TensorData::new(images.concat(), [b, 3, size, size]), device);
        let patched_hosts = options
            .spots
            .iter()
            .map(|&spot| {
                let patched = match (&patch, spot) {
                    (Some((p, placement)), EvalSpot::Fixed) => paste_patch(clean.clone(), p.clone(), placement),
                    (Some((p, placement)), EvalSpot::Random { .. }) => {
                        // The images' places among those read so far.
                        let each = (truth.len() - b..truth.len())
                            .map(|index| spot.draw(index, placement).expect("a random spot draws"))
                            .collect();
                        Paste::Transformed(each).apply(clean.clone(), p.clone())
                    }
                    (None, _) => clean.clone(),
                };
                read(patched)
            })
            .collect::<Result<Vec<_>>>()?;
        let clean_host = read(clean)?;
        let classify = |pixels: Vec<f32>, preds: &mut Vec<usize>, embs: &mut Vec<f32>| -> Result<()> {
            let x = Tensor::<4>::from_data(TensorData::new(pixels, [b, 3, size, size]), device);
            let e = model.encode_image(normalize_pixels(x));
            let logits = read(head.logits(e.clone()))?;
            preds.extend(logits.chunks(options.labels.len()).map(argmax));
            embs.extend(read(e)?);
            Ok(())
        };
        let through = |pixels: &[f32], defence: Option<&Defence>| match defence {
            None => Ok(pixels.to_vec()),
            Some(d) => defend(pixels, b, size, d, start as u64),
        };
        for (c, defence) in conditions.iter().enumerate() {
            classify(through(&clean_host, *defence)?, &mut clean_pred[c], &mut clean_emb[c])?;
            for (s, patched_host) in patched_hosts.iter().enumerate() {
                classify(through(patched_host, *defence)?, &mut adv_pred[s][c], &mut adv_emb[s][c])?;
            }
        }
    }
    if truth.is_empty() {
        return Err(Error::invalid("no image of the dataset could be read"));
    }
    let labelled: Vec<usize> = (0..truth.len()).filter(|&i| truth[i].is_some()).collect();
    let text_embeddings = if captions.iter().all(Option::is_some) {
        let texts: Vec<String> = captions.iter().map(|c| c.clone().unwrap_or_default()).collect();
        Some(read(crate::embed::embed_texts(model, &tokenizer, &texts)?)?)
    } else {
        None
    };
    let dim = model.config().projection_dim;
    let report = |s: usize, c: usize, defence: Option<&Defence>| {
        let (adv_pred, adv_emb) = (&adv_pred[s], &adv_emb[s]);
        let pick = |v: &[usize]| labelled.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let t: Vec<usize> = labelled.iter().map(|&i| truth[i].unwrap_or(0)).collect();
        let zero_shot = if labelled.is_empty() {
            // No ground truth: only the fooling rate and the targeted success are meaningful.
            let mut m = zero_shot_metrics(&clean_pred[c], &clean_pred[c], &adv_pred[c], options.target);
            m.clean_accuracy = f64::NAN;
            m.patched_accuracy = f64::NAN;
            m
        } else {
            zero_shot_metrics(&t, &pick(&clean_pred[c]), &pick(&adv_pred[c]), options.target)
        };
        let retrieval = text_embeddings.as_ref().map(|texts| {
            let n = truth.len();
            let sims = |images: &[f32]| -> (Vec<f32>, Vec<f32>) {
                let i2t: Vec<f32> = (0..n)
                    .flat_map(|i| {
                        (0..n).map(move |j| dot(&images[i * dim..(i + 1) * dim], &texts[j * dim..(j + 1) * dim]))
                    })
                    .collect();
                let t2i: Vec<f32> = (0..n).flat_map(|j| (0..n).map(|i| i2t[i * n + j]).collect::<Vec<_>>()).collect();
                (i2t, t2i)
            };
            let (ci, ct) = sims(&clean_emb[c]);
            let (ai, at) = sims(&adv_emb[c]);
            let pair = |q: usize, g: usize| q == g;
            RetrievalReport {
                image_to_text_clean: retrieval_metrics(&ci, n, n, pair),
                image_to_text_patched: retrieval_metrics(&ai, n, n, pair),
                text_to_image_clean: retrieval_metrics(&ct, n, n, pair),
                text_to_image_patched: retrieval_metrics(&at, n, n, pair),
            }
        });
        let mlp_probe = (options.probe && c == 0 && labelled.len() >= 4).then(|| {
            // Even positions of a seeded shuffle train the probe, odd ones test it.
            let order = crate::rng::SeededRng::new(0, "probe split").permutation(labelled.len());
            let (train, test): (Vec<usize>, Vec<usize>) =
                order.iter().map(|&k| labelled[k]).enumerate().fold((vec![], vec![]), |(mut a, mut b), (k, i)| {
                    if k % 2 == 0 {
                        a.push(i)
                    } else {
                        b.push(i)
                    }
                    (a, b)
                });
            let rows = |emb: &[f32], idx: &[usize]| {
                idx.iter().flat_map(|&i| emb[i * dim..(i + 1) * dim].iter().copied()).collect::<Vec<f32>>()
            };
            let label_of = |idx: &[usize]| idx.iter().map(|&i| truth[i].unwrap_or(0)).collect::<Vec<usize>>();
            super::probe::mlp_probe(
                &rows(&clean_emb[c], &train),
                &label_of(&train),
                &rows(&clean_emb[c], &test),
                &rows(&adv_emb[c], &test),
                &label_of(&test),
                dim,
                options.labels.len(),
                0,
                &device.clone().autodiff(),
            )
        });
        EvalReport { defence: defence.map(Defence::name), zero_shot, retrieval, mlp_probe }
    };
    let reports = (0..options.spots.len())
        .map(|s| conditions.iter().enumerate().map(|(c, defence)| report(s, c, *defence)).collect())
        .collect();
    let images = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| ImageOutcome {
            name,
            truth: truth[i],
            clean: clean_pred[0][i],
            patched: (options.spots.iter().enumerate())
                .map(|(s, spot)| (adv_pred[s][0][i], patch.as_ref().and_then(|(_, placement)| spot.draw(i, placement))))
                .collect(),
        })
        .collect();
    Ok(Evaluation { reports, skipped, images })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Applies a defence to each of `b` CHW images in [0, 1] (through 8-bit pixels, as a real pipeline would).
fn defend(pixels: &[f32], b: usize, size: usize, defence: &Defence, key: u64) -> Result<Vec<f32>> {
    let plane = size * size;
    let mut out = Vec::with_capacity(pixels.len());
    for i in 0..b {
        let chw = &pixels[i * 3 * plane..(i + 1) * 3 * plane];
        let img = crate::preprocess::unit_chw_to_image(chw, size as u32, size as u32);
        out.extend(crate::preprocess::to_unit_chw(&defence.apply(&img, key + i as u64)?));
    }
    Ok(out)
}
