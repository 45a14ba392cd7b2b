-- name: top_accuracy_correlates
-- description: Per layer, the parameters and aggregates most correlated with accuracy, FDR-controlled (needs `weightlake analyze correlations`).
-- param: zoo string  the zoo
-- param: method string = spearman  pearson or spearman
-- param: top int = 5  how many per layer
-- param: max_q double = 0.05  Benjamini-Hochberg q-value threshold
-- requires: correlations
SELECT layer, kind, feature, round(r, 4) AS r, p, q, n
FROM correlations
WHERE zoo = $zoo AND against = 'accuracy' AND method = $method AND q <= $max_q AND layer IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY layer ORDER BY abs(r) DESC) <= $top
ORDER BY layer, abs(r) DESC;
