-- name: evaluation_leaderboard
-- description: Evaluated checkpoints and tracking files ranked by Wasserstein-1 of predicted vs ground-truth weights, with fine-tuned results, collapse and rebuilt-CNN accuracy.
-- param: scenario string = *  only this scenario (* for every scenario)
-- requires: evaluations
SELECT scenario, split, source_kind, checkpoint, loss, epoch, d_model, n_heads, d_ff, n_layers, neck,
       n_pairs, pd_mse, pd_w1, pd_cosine, fn_mse, fn_w1, pdfn_w1, collapsed, pd_top_row_share,
       pd_accuracy, gt_accuracy, error
FROM evaluations
WHERE $scenario = '*' OR scenario = $scenario
ORDER BY scenario, pd_w1 NULLS LAST, checkpoint;
