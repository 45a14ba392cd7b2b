-- name: ntk_kappa_by_group
-- description: NTK condition number and learning-rate bound by activation, init, epoch and class count, trained vs fresh init, with mean accuracy (needs `weightlake analyze ntk`).
-- param: zoo string  the zoo to summarise
-- param: form string = trace  'trace' ([K, K]) or 'full' ([K*10, K*10]) kernel
-- requires: ntk
SELECT n.state, m.activation, m.init, m.epoch, m.n_classes, count(*) AS models,
       round(median(log10(n.kappa)), 3)  AS median_log10_kappa,
       round(median(n.lambda_max), 4)    AS median_lambda_max,
       round(median(n.lr_bound), 6)      AS median_lr_bound,
       round(avg(m.accuracy), 2)         AS mean_accuracy
FROM ntk n JOIN models m USING (model_id)
WHERE n.zoo = $zoo AND n.form = $form AND isfinite(n.kappa)
GROUP BY ALL
ORDER BY n.state, m.activation, m.init, m.epoch, m.n_classes;
