-- name: super_weight_persistence
-- description: Does a run's super weight stay the same flat index across its epoch bins (same classes, activation, init); runs with at least two analysed bins (needs `weightlake analyze super-weights`).
-- param: zoo string  the zoo to summarise
-- requires: super_weights
WITH top1 AS (
    SELECT m.init, m.activation, m.class_mask, m.epoch, s.flat_index
    FROM super_weights s JOIN models m USING (model_id)
    WHERE s.zoo = $zoo AND s.model_rank = 1
), runs AS (
    SELECT init, activation, class_mask, count(*) AS bins, count(DISTINCT flat_index) AS distinct_indices
    FROM top1 GROUP BY ALL HAVING count(*) >= 2
)
SELECT activation, init, count(*) AS runs, round(avg(bins), 2) AS mean_bins,
       round(avg(CASE WHEN distinct_indices = 1 THEN 1.0 ELSE 0.0 END), 3) AS share_persistent,
       round(avg(distinct_indices), 2) AS mean_distinct_indices
FROM runs
GROUP BY ALL
ORDER BY activation, init;
