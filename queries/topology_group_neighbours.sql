-- name: topology_group_neighbours
-- description: For each group, the nearest other group by the Wasserstein distance of its H0 neuron-cloud diagram (needs `weightlake analyze topology-groups`).
-- param: zoo string  the zoo whose groups to compare
-- param: space string=neurons  cloud: neurons, models (or function_rips with metric signed_measure_w1)
-- param: metric string=wasserstein  bottleneck, wasserstein, sliced_wasserstein, signed_measure_w1
-- requires: topology_group_distances
WITH d AS (
    SELECT group_a AS g, group_b AS other, value FROM topology_group_distances
    WHERE zoo = $zoo AND space = $space AND metric = $metric AND dim = 0
    UNION ALL
    SELECT group_b, group_a, value FROM topology_group_distances
    WHERE zoo = $zoo AND space = $space AND metric = $metric AND dim = 0
)
SELECT g AS "group", arg_min(other, value) AS nearest, round(min(value), 4) AS distance,
       round(avg(value), 4) AS mean_distance
FROM d GROUP BY g ORDER BY distance;
