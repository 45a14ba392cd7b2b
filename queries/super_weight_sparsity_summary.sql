-- name: super_weight_sparsity_summary
-- description: Enforced sparsity: mean accuracy after zeroing k weights chosen by magnitude, as super weights, or at random (needs `weightlake analyze super-weights`).
-- param: zoo string  the zoo to summarise
-- requires: super_weight_sparsity
SELECT k, method, count(*) AS models, round(avg(base_accuracy), 2) AS base_accuracy,
       round(avg(accuracy), 2) AS mean_accuracy, round(avg(base_accuracy - accuracy), 2) AS mean_drop
FROM super_weight_sparsity
WHERE zoo = $zoo
GROUP BY ALL
ORDER BY k, method;
