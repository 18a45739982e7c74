import numpy as np
import pytest

from roots_edge.runtimes.sampling import GenerationConfig, Sampler


def test_greedy_is_argmax():
    assert Sampler(GenerationConfig())(np.array([0.1, 3.0, 2.9])) == 1


def test_seed_gives_same_samples_and_distribution_follows_temperature():
    logits = np.log(np.array([0.5, 0.3, 0.2]))
    def draws(seed):
        sampler = Sampler(GenerationConfig(temperature=1.0, seed=seed))
        return [sampler(logits) for _ in range(200)]

    assert draws(3) == draws(3) and draws(3) != draws(4)
    s = Sampler(GenerationConfig(temperature=1.0, seed=0))
    counts = np.bincount([s(logits) for _ in range(20000)], minlength=3) / 20000
    assert np.allclose(counts, [0.5, 0.3, 0.2], atol=0.015)


def test_top_k_and_top_p_cut_the_tail():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    s = Sampler(GenerationConfig(temperature=1.0, top_k=2, seed=0))
    assert set(s(logits) for _ in range(2000)) == {0, 1}
    s = Sampler(GenerationConfig(temperature=1.0, top_p=0.79, seed=0))
    assert set(s(logits) for _ in range(2000)) == {0, 1}   # 0.5 + 0.3 covers 0.79
    s = Sampler(GenerationConfig(temperature=1.0, top_p=0.81, seed=0))
    assert set(s(logits) for _ in range(4000)) == {0, 1, 2}


def test_tiny_logit_noise_does_not_change_seeded_samples():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=500) * 3
    a = Sampler(GenerationConfig(temperature=0.7, top_p=0.9, seed=42))
    b = Sampler(GenerationConfig(temperature=0.7, top_p=0.9, seed=42))
    same = sum(a(logits) == b(logits + rng.normal(size=500) * 1e-6) for _ in range(500))
    assert same >= 498


@pytest.mark.parametrize("kw", [{"temperature": -1}, {"top_p": 0}, {"top_k": -1}, {"max_new_tokens": -2}])
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        GenerationConfig(**kw)
