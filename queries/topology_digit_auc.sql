-- name: topology_digit_auc
-- description: Cross-validated AUC of "digit in classes" per digit, topology vs the norms-and-spectra baseline (needs `weightlake analyze topology-classes`).
-- param: zoo string  the zoo
-- requires: topology_classes
SELECT digit,
       round(max(auc) FILTER (WHERE features = 'topology'), 3) AS topology,
       round(max(auc) FILTER (WHERE features = 'baseline'), 3) AS baseline,
       round(max(auc) FILTER (WHERE features = 'both'), 3)     AS both,
       any_value(cv) AS cv, any_value(n_models) AS models, any_value(n_positive) AS with_digit
FROM topology_classes
WHERE zoo = $zoo AND kind = 'auc'
GROUP BY digit ORDER BY digit;
