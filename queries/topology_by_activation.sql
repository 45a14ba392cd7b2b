-- name: topology_by_activation
-- description: Mean persistence figures of each layer by activation, and how H0 total persistence tracks accuracy (needs `weightlake analyze topology`).
-- param: zoo string  the zoo to summarise
-- requires: topology
SELECT t.layer, m.activation, count(*) AS models,
       round(avg(t.h0_total_persistence), 4)    AS h0_total,
       round(avg(t.h1_count), 2)                AS h1_bars,
       round(avg(t.neural_persistence_norm), 4) AS neural_persistence,
       round(avg(t.cubical_h1_total), 4)        AS cubical_h1,
       round(corr(t.h0_total_persistence, m.accuracy), 3) AS corr_h0_accuracy
FROM topology t JOIN models m USING (model_id)
WHERE t.zoo = $zoo
GROUP BY ALL
ORDER BY t.layer, m.activation;
