import dataclasses

from surgvqa.train.sanity import sanity_overfit


def test_sanity_overfit_passes_on_a_working_setup_and_fails_when_nothing_can_learn(tiny_project):
    tp = tiny_project
    p = dataclasses.replace(tp["params"], sanity=dataclasses.replace(tp["params"].sanity, samples=8, steps=60,
                                                                      batch_size=8, learning_rate=1e-2))
    good = sanity_overfit(p, tp["splits"], tp["raw"], tp["base"])
    assert good["passed"], good
    assert good["passed"] and good["final_loss"] < good["threshold"] < good["first_loss"]
    frozen = dataclasses.replace(p, sanity=dataclasses.replace(p.sanity, steps=10, learning_rate=1e-12))
    assert not sanity_overfit(frozen, tp["splits"], tp["raw"], tp["base"])["passed"]
