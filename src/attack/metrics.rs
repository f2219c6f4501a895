//! How well a patch works: zero-shot accuracy, fooling and targeted success rates, retrieval recall and mAP.

use serde::Serialize;

/// Zero-shot numbers over one set of images, each a fraction in [0, 1].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ZeroShotMetrics {
    pub images: usize,
    pub clean_accuracy: f64,
    pub patched_accuracy: f64,
    /// Share of images whose predicted label changes when the patch is pasted.
    pub fooling_rate: f64,
    /// Share of patched images predicted as the target (targeted patches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targeted_success_rate: Option<f64>,
}

/// From per-image true labels and clean/patched predictions (label indices).
pub fn zero_shot_metrics(
    truth: &[usize],
    clean: &[usize],
    patched: &[usize],
    target: Option<usize>,
) -> ZeroShotMetrics {
    let n = truth.len().min(clean.len()).min(patched.len());
    if n == 0 {
        return ZeroShotMetrics::default();
    }
    let share = |count: usize| count as f64 / n as f64;
    let count = |f: &dyn Fn(usize) -> bool| (0..n).filter(|&i| f(i)).count();
    ZeroShotMetrics {
        images: n,
        clean_accuracy: share(count(&|i| clean[i] == truth[i])),
        patched_accuracy: share(count(&|i| patched[i] == truth[i])),
        fooling_rate: share(count(&|i| patched[i] != clean[i])),
        targeted_success_rate: target.map(|t| share(count(&|i| patched[i] == t))),
    }
}

/// Share of rows whose top label differs between clean and patched logits (row-major, `labels` per row): the
/// running fooling rate a training loop reports from the features its step already computed.
pub fn fooling_rate(clean_logits: &[f32], patched_logits: &[f32], labels: usize) -> f64 {
    let rows = clean_logits.len() / labels.max(1);
    if rows == 0 {
        return 0.0;
    }
    let changed = clean_logits
        .chunks(labels)
        .zip(patched_logits.chunks(labels))
        .filter(|(c, p)| crate::zeroshot::argmax(c) != crate::zeroshot::argmax(p))
        .count();
    changed as f64 / rows as f64
}

/// Retrieval quality in one direction (queries against a gallery).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RetrievalMetrics {
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    /// Mean average precision over the whole ranking.
    pub map: f64,
    /// Precision of the first result (what the AdvCLIP authors call mAP).
    pub map_at_1: f64,
}

/// `scores[q * gallery + g]` is the similarity of query q and gallery item g; `relevant(q, g)` says which match.
pub fn retrieval_metrics(
    scores: &[f32],
    queries: usize,
    gallery: usize,
    relevant: impl Fn(usize, usize) -> bool,
) -> RetrievalMetrics {
    if queries == 0 || gallery == 0 {
        return RetrievalMetrics::default();
    }
    let mut m = RetrievalMetrics::default();
    for q in 0..queries {
        let ranking = crate::zeroshot::rank(&scores[q * gallery..(q + 1) * gallery]);
        let first_hit = ranking.iter().position(|&g| relevant(q, g));
        for (k, slot) in [(1, &mut m.recall_at_1), (5, &mut m.recall_at_5), (10, &mut m.recall_at_10)] {
            *slot += first_hit.is_some_and(|r| r < k) as u8 as f64;
        }
        m.map_at_1 += relevant(q, ranking[0]) as u8 as f64;
        let (mut hits, mut precision_sum) = (0usize, 0f64);
        for (r, &g) in ranking.iter().enumerate() {
            if relevant(q, g) {
                hits += 1;
                precision_sum += hits as f64 / (r + 1) as f64;
            }
        }
        m.map += if hits > 0 { precision_sum / hits as f64 } else { 0.0 };
    }
    for v in [&mut m.recall_at_1, &mut m.recall_at_5, &mut m.recall_at_10, &mut m.map, &mut m.map_at_1] {
        *v /= queries as f64;
    }
    m
}

/// Relative drop `(clean - patched) / clean` (0 when clean is 0).
pub fn relative_drop(clean: f64, patched: f64) -> f64 {
    if clean > 0.0 { (clean - patched) / clean } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fooling_rate_counts_rows_whose_top_label_moved() {
        let clean = [0.9, 0.1, 0.0, 0.2, 0.7, 0.1, 0.3, 0.3, 0.4];
        let patched = [0.1, 0.8, 0.1, 0.1, 0.8, 0.1, 0.0, 0.9, 0.1];
        assert_eq!(fooling_rate(&clean, &patched, 3), 2.0 / 3.0);
        assert_eq!(fooling_rate(&[], &[], 3), 0.0);
    }

    #[test]
    fn zero_shot_counts() {
        let m = zero_shot_metrics(&[0, 1, 2, 0], &[0, 1, 2, 1], &[2, 2, 2, 1], Some(2));
        assert_eq!(m.clean_accuracy, 0.75);
        assert_eq!(m.patched_accuracy, 0.25);
        assert_eq!(m.fooling_rate, 0.5);
        assert_eq!(m.targeted_success_rate, Some(0.75));
    }

    #[test]
    fn retrieval_by_hand() {
        // Two queries, three items; query 0's match (item 0) ranks 2nd, query 1's (item 1) ranks 1st.
        let scores = [0.5, 0.9, 0.1, 0.2, 0.8, 0.3];
        let m = retrieval_metrics(&scores, 2, 3, |q, g| q == g);
        assert_eq!(m.recall_at_1, 0.5);
        assert_eq!(m.recall_at_5, 1.0);
        assert_eq!(m.map_at_1, 0.5);
        assert!((m.map - (0.5 + 1.0) / 2.0).abs() < 1e-12);
    }
}
