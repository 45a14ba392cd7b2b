-- name: evaluations_by_metric
-- description: One metric for every evaluated checkpoint and tracking file, whole vector and per layer, for each comparison (pd = predicted vs ground truth, fn = fine-tuned vs ground truth, pdfn = predicted vs fine-tuned), best first.
-- param: metric string = w1  a metric of weightlake.analysis.metrics.METRICS (mse, w1, cosine, kl, ...) or ar_mse_ratio
-- param: comparison string = pd  pd, fn or pdfn
-- param: scenario string = *  only this scenario (* for every scenario)
-- requires: evaluation_metrics
SELECT scenario, split, source_kind, checkpoint, loss, epoch,
       coalesce(layer, 'whole') AS layer,
       mean, median, std, n_valid, n
FROM evaluation_metrics
WHERE metric = $metric AND comparison = $comparison AND ($scenario = '*' OR scenario = $scenario)
ORDER BY scenario, split, layer NULLS FIRST, mean, checkpoint;
