import dataclasses

from surgvqa.train.sanity import sanity_overfit


def test_sanity_overfit_passes_on_a_working_setup_and_fails_when_nothing_can_learn(tiny_project):
    project = tiny_project
    params = project["params"]
    sanity = dataclasses.replace(params.sanity, samples=8, steps=60, batch_size=8, learning_rate=1e-2)
    rest = (params.model, params.prompt, params.lora, params.train)
    good = sanity_overfit(project["splits"], project["raw"], project["base"], *rest, sanity)
    assert good["passed"] and good["final_loss"] < good["threshold"] < good["first_loss"], good
    frozen = dataclasses.replace(sanity, steps=10, learning_rate=1e-12)
    assert not sanity_overfit(project["splits"], project["raw"], project["base"], *rest, frozen)["passed"]
