-- name: super_weight_index_by_group
-- description: Which flat index is most often a model's super weight (its single most harmful weight), by activation and init (needs `weightlake analyze super-weights`).
-- param: zoo string  the zoo to summarise
-- requires: super_weights
WITH top1 AS (
    SELECT m.activation, m.init, s.layer, s.flat_index, s.accuracy_drop
    FROM super_weights s JOIN models m USING (model_id)
    WHERE s.zoo = $zoo AND s.model_rank = 1
), counted AS (
    SELECT activation, init, layer, flat_index, count(*) AS models, round(avg(accuracy_drop), 2) AS mean_drop,
           sum(count(*)) OVER (PARTITION BY activation, init) AS group_models,
           row_number() OVER (PARTITION BY activation, init ORDER BY count(*) DESC, flat_index) AS place
    FROM top1 GROUP BY activation, init, layer, flat_index
)
SELECT activation, init, layer, flat_index, models, group_models,
       round(models / group_models, 3) AS share, mean_drop
FROM counted WHERE place = 1
ORDER BY activation, init;
