//! Zero-shot classification (labels through prompt templates, cached text embeddings) and image-text retrieval.

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::model::{Clip, TokenBatch, l2_normalize};
use crate::tokenizer::Tokenizer;

/// The prompt template of the CLIP paper.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// A small prompt ensemble in the spirit of the CLIP paper's ImageNet prompts.
pub const ENSEMBLE_TEMPLATES: [&str; 6] = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a close-up photo of a {}.",
    "a rendering of a {}.",
];

/// Longest label we accept, in characters (the context of 77 tokens is the real limit; this guards the tokenizer).
pub const MAX_LABEL_CHARS: usize = 300;

/// Splits a comma-separated label list, trimming spaces; empty, duplicate or over-long labels are errors.
pub fn parse_labels(list: &str) -> Result<Vec<String>> {
    let labels: Vec<String> = list.split(',').map(|l| l.trim().to_string()).collect();
    check_labels(&labels)?;
    Ok(labels)
}

pub fn check_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() || labels.iter().all(|l| l.is_empty()) {
        return Err(Error::invalid("no labels given: pass at least one, e.g. --labels \"cat,dog\""));
    }
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() {
            return Err(Error::invalid(format!("label {} is empty (check for doubled or trailing commas)", i + 1)));
        }
        if label.chars().count() > MAX_LABEL_CHARS {
            return Err(Error::invalid(format!(
                "label {} is {} characters long; at most {MAX_LABEL_CHARS}",
                i + 1,
                label.chars().count()
            )));
        }
        if labels[..i].contains(label) {
            return Err(Error::invalid(format!("label \"{label}\" is given twice")));
        }
    }
    Ok(())
}

/// A template must have exactly one `{}` where the label goes.
pub fn check_template(template: &str) -> Result<()> {
    match template.matches("{}").count() {
        1 => Ok(()),
        0 => Err(Error::invalid(format!(
            "template \"{template}\" has no {{}} where the label goes, e.g. \"a photo of a {{}}.\""
        ))),
        n => Err(Error::invalid(format!("template \"{template}\" has {n} {{}}; use exactly one"))),
    }
}

/// A zero-shot head: one normalised text embedding per label (the mean over the templates when several).
/// Building it runs the text tower once; keep it while labels and templates stay the same.
pub struct ZeroShotClassifier {
    labels: Vec<String>,
    templates: Vec<String>,
    /// [labels, projection_dim], rows L2-normalised.
    label_embeddings: Tensor<2>,
    logit_scale: f32,
}

impl ZeroShotClassifier {
    pub fn new(model: &Clip, tokenizer: &Tokenizer, labels: &[String], templates: &[String]) -> Result<Self> {
        check_labels(labels)?;
        if templates.is_empty() {
            return Err(Error::invalid("no prompt template given"));
        }
        templates.iter().try_for_each(|t| check_template(t))?;
        let text = &model.config().text;
        let mut sequences = Vec::with_capacity(labels.len() * templates.len());
        for template in templates {
            for label in labels {
                let prompt = template.replace("{}", label);
                let ids = tokenizer.encode(&prompt);
                if ids.len() > text.context_length {
                    return Err(Error::invalid(format!(
                        "label \"{label}\" makes a prompt of {} tokens; the model reads at most {}",
                        ids.len(),
                        text.context_length
                    )));
                }
                sequences.push(ids);
            }
        }
        let tokens = TokenBatch::new(&sequences, text.context_length, text.vocab_size)?;
        let per_prompt = model.encode_text(&tokens); // [templates * labels, dim], template-major
        let dim = per_prompt.dims()[1];
        let mean = per_prompt.reshape([templates.len(), labels.len(), dim]).mean_dim(0).reshape([labels.len(), dim]);
        Ok(Self {
            labels: labels.to_vec(),
            templates: templates.to_vec(),
            label_embeddings: l2_normalize(mean),
            logit_scale: model.logit_scale,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether this head was built for these labels and templates (so a caller can reuse it).
    pub fn matches(&self, labels: &[String], templates: &[String]) -> bool {
        self.labels == labels && self.templates == templates
    }

    pub fn label_embeddings(&self) -> Tensor<2> {
        self.label_embeddings.clone()
    }

    /// `exp(logit_scale) * cosine`, [images, labels], from normalised image embeddings.
    pub fn logits(&self, image_embeddings: Tensor<2>) -> Tensor<2> {
        image_embeddings.matmul(self.label_embeddings.clone().transpose()).mul_scalar(self.logit_scale.exp())
    }

    /// Class probabilities, [images, labels].
    pub fn probabilities(&self, image_embeddings: Tensor<2>) -> Tensor<2> {
        burn::tensor::activation::softmax(self.logits(image_embeddings), 1)
    }
}

/// One image's result, made on the host from a row of probabilities.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    pub top: String,
    pub top_index: usize,
    pub probs: Vec<(String, f32)>,
}

/// Turns a row-major [images, labels] probability matrix (read from the device) into predictions.
pub fn predictions(labels: &[String], probs: &[f32]) -> Vec<Prediction> {
    probs
        .chunks(labels.len().max(1))
        .map(|row| {
            let top_index = argmax(row);
            Prediction {
                top: labels[top_index].clone(),
                top_index,
                probs: labels.iter().cloned().zip(row.iter().copied()).collect(),
            }
        })
        .collect()
}

/// Index of the largest value (the first on ties, like PyTorch).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Indices of `scores` from best to worst (stable on ties): a retrieval ranking.
pub fn rank(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Cosine similarities [images, texts] between normalised embeddings, for retrieval in either direction.
pub fn similarity(image_embeddings: Tensor<2>, text_embeddings: Tensor<2>) -> Tensor<2> {
    image_embeddings.matmul(text_embeddings.transpose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_templates_are_checked() {
        assert_eq!(parse_labels(" cat, dog ,red square").unwrap(), ["cat", "dog", "red square"]);
        for bad in ["", " , ", "cat,,dog", "cat,dog,", "cat,cat"] {
            assert!(parse_labels(bad).is_err(), "{bad:?}");
        }
        assert!(parse_labels(&"x".repeat(MAX_LABEL_CHARS + 1)).is_err());
        assert!(check_template("a photo of a {}.").is_ok());
        assert!(check_template("a photo").is_err());
        assert!(check_template("{} and {}").is_err());
    }

    #[test]
    fn ranking_and_argmax_break_ties_by_position() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
        assert_eq!(rank(&[0.1, 0.7, 0.7, 0.2]), [1, 2, 3, 0]);
    }
}
