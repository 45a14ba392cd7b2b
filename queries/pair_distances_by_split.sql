-- name: pair_distances_by_split
-- description: For a scenario's pairs, mean Wasserstein-1 and MSE between each input and the target, by split.
-- param: scenario string  the scenario
-- requires: pairs
SELECT split, count(*) AS pairs,
       round(avg(wl_w1_by_id(a_id, target_id)), 6)  AS w1_a_target,
       round(avg(wl_w1_by_id(b_id, target_id)), 6)  AS w1_b_target,
       round(avg(wl_mse_by_id(a_id, target_id)), 8) AS mse_a_target,
       round(avg(wl_w1_by_id(a_id, b_id)), 6)       AS w1_a_b
FROM pairs
WHERE scenario = $scenario
GROUP BY split
ORDER BY split;
