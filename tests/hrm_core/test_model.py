"""HRM model tests on a tiny CPU config: shapes, one-step gradient, ACT, presets, config, and
the TRM architecture of the same class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrm_arc.hrm_core.layers import SwiGLU
from hrm_arc.hrm_core.losses import act_loss
from hrm_arc.hrm_core.model import HRM, Carry, HRMConfig, HRMOutput
from hrm_arc.hrm_core.optimizer import AdamATan2, SignSGD
from hrm_arc.presets import PRESETS, make_config

SEQ = 16
VOCAB = 12


def tiny_model(seed: int = 0, **overrides: object) -> HRM:
    torch.manual_seed(seed)
    # The full Q-learning path (q_continue target) at the former tiny width, where not overridden.
    fields = {"seq_len": SEQ, "num_puzzle_ids": 6, "halt_exploration_prob": 0.0,
              "hidden_size": 64, "num_heads": 2, "puzzle_emb_ndim": 64, "q_learning": "full"}
    fields.update(overrides)
    return HRM(make_config("tiny", **fields))


def make_batch(size: int = 3, seed: int = 1, ids: list[int] | None = None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, VOCAB, (size, SEQ), generator=gen)
    labels = torch.randint(0, VOCAB, (size, SEQ), generator=gen)
    labels[:, -3:] = -100  # some unsupervised padding
    puzzle_ids = torch.tensor(ids if ids is not None else [1 + i % 5 for i in range(size)])
    return {"inputs": inputs, "labels": labels, "puzzle_ids": puzzle_ids}


def set_q_bias(model: HRM, halt: float, cont: float) -> None:
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([halt, cont]))


# ----------------------------------------------------------------------------- shapes


def test_output_shapes_and_dtypes_in_training() -> None:
    model, batch = tiny_model().train(), make_batch()
    carry, out = model(model.initial_carry(batch), batch)
    assert out.logits.shape == (3, SEQ, VOCAB) and out.logits.dtype == torch.float32
    assert out.q_halt_logits.shape == (3,) and out.q_halt_logits.dtype == torch.float32
    assert out.q_continue_logits.shape == (3,)
    assert out.target_q_continue is not None and out.target_q_continue.shape == (3,)
    assert carry.z_H.shape == (3, 1 + SEQ, 64) and carry.z_L.shape == carry.z_H.shape
    assert carry.steps.dtype == torch.int32 and carry.halted.dtype == torch.bool
    assert not carry.z_H.requires_grad and not carry.z_L.requires_grad


def test_eval_has_no_target_and_halt_only_has_no_target() -> None:
    model, batch = tiny_model().eval(), make_batch()
    _, out = model(model.initial_carry(batch), batch)
    assert out.target_q_continue is None
    model = tiny_model(q_learning="halt_only").train()
    _, out = model(model.initial_carry(batch), batch)
    assert out.target_q_continue is None


def test_q_head_init_and_puzzle_tokens_padding() -> None:
    model = tiny_model(puzzle_emb_ndim=80)  # 80 > hidden 64 -> two puzzle tokens
    assert model.puzzle_len == 2
    assert torch.all(model.q_head.weight == 0) and torch.all(model.q_head.bias == -5)
    batch = make_batch()
    carry, out = model.train()(model.initial_carry(batch), batch)
    assert carry.z_H.shape == (3, 2 + SEQ, 64) and out.logits.shape == (3, SEQ, VOCAB)


def test_learned_positions_and_no_puzzle_embedding_run() -> None:
    batch = make_batch()
    for overrides in ({"pos_encodings": "learned"}, {"puzzle_emb_ndim": 0}):
        model = tiny_model(**overrides).train()
        _, out = model(model.initial_carry(batch), batch)
        loss, _ = act_loss(out, batch["labels"], "stablemax")
        loss.backward()
        assert torch.isfinite(loss)
    assert tiny_model(puzzle_emb_ndim=0).puzzle_emb is None


def test_wrong_sequence_length_is_an_error() -> None:
    model, batch = tiny_model(), make_batch()
    batch["inputs"] = batch["inputs"][:, :-1]
    with pytest.raises(ValueError, match="seq_len"):
        model(model.initial_carry(batch), batch)


def test_paper_swiglu_width_is_1536() -> None:
    with torch.device("meta"):
        mlp = SwiGLU(512, 4.0)
    assert mlp.down_proj.weight.shape == (512, 1536)


# ----------------------------------------------------------------------------- gradient


def count_saved_tensors(model: HRM) -> int:
    """Tensors autograd keeps for backward during one training segment."""
    batch, count = make_batch(), 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(model.initial_carry(batch), batch)
    return count


def test_only_last_l_and_h_updates_hold_a_graph() -> None:
    small = count_saved_tensors(tiny_model(H_cycles=2, L_cycles=2))
    large = count_saved_tensors(tiny_model(H_cycles=6, L_cycles=6))
    assert small > 0 and small == large
    # One more layer per module adds exactly one layer's worth of saved tensors per module
    # used in the graph (one L, one H application), not one per cycle.
    deeper = count_saved_tensors(tiny_model(H_cycles=6, L_cycles=6, H_layers=2, L_layers=2))
    one_layer = count_saved_tensors(tiny_model(H_cycles=2, L_cycles=2, H_layers=2, L_layers=1))
    assert deeper - one_layer == one_layer - small


def test_gradients_reach_dense_weights_and_puzzle_rows() -> None:
    model, batch = tiny_model().train(), make_batch()
    carry, out = model(model.initial_carry(batch), batch)
    loss, _ = act_loss(out, carry.batch["labels"], "stablemax")
    loss.backward()
    assert model.embed_tokens.weight.grad is not None
    assert model.L_level.layers[0].mlp.down_proj.weight.grad is not None
    local = model.puzzle_emb.local_weights
    assert local.grad is not None and local.grad.shape == (3, 64)
    assert torch.equal(model.puzzle_emb.local_ids, batch["puzzle_ids"])


# ----------------------------------------------------------------------------- ACT


def test_eval_runs_every_row_for_halt_max_steps() -> None:
    model, batch = tiny_model().eval(), make_batch()
    set_q_bias(model, halt=10.0, cont=-10.0)  # Q says halt now: eval must ignore it
    carry = model.initial_carry(batch)
    for step in range(1, 5):
        carry, out = model(carry, batch)
        assert torch.all(carry.steps == step)
        assert torch.all(carry.halted == (step == 4))
    new = make_batch(seed=7)
    carry, _ = model(carry, new)  # all halted: every row takes the new batch
    assert torch.equal(carry.batch["inputs"], new["inputs"]) and torch.all(carry.steps == 1)


def test_train_halts_at_max_steps_when_q_never_halts() -> None:
    model, batch = tiny_model().train(), make_batch()
    set_q_bias(model, halt=-10.0, cont=10.0)
    carry = model.initial_carry(batch)
    for step in range(1, 5):
        carry, _ = model(carry, batch)
        assert torch.all(carry.halted == (step == 4))
        assert torch.all(carry.steps == step)


@pytest.mark.parametrize(
    ("q_learning", "halt", "cont", "expect"),
    [
        ("full", 1.0, 0.0, True),  # q_halt > q_continue
        ("full", -5.0, -5.0, False),  # equal: keep going
        ("halt_only", 0.5, 9.0, True),  # q_halt > 0, q_continue ignored
        ("halt_only", -0.5, -9.0, False),
    ],
)
def test_train_halting_follows_q(q_learning: str, halt: float, cont: float, expect: bool) -> None:
    model, batch = tiny_model(q_learning=q_learning).train(), make_batch()
    set_q_bias(model, halt=halt, cont=cont)
    carry, _ = model(model.initial_carry(batch), batch)
    assert torch.all(carry.halted == expect)


def test_exploration_delays_halting_to_at_least_two_steps() -> None:
    model, batch = tiny_model(halt_exploration_prob=1.0).train(), make_batch(size=8)
    set_q_bias(model, halt=5.0, cont=-5.0)
    carry, _ = model(model.initial_carry(batch), batch)
    assert not torch.any(carry.halted)  # every row explores: minimum 2..4 segments
    ever_halted = torch.zeros(8, dtype=torch.bool)
    for _ in range(3):  # a halted row restarts, so record the first halt per row
        carry, _ = model(carry, batch)
        ever_halted |= carry.halted
    assert torch.all(ever_halted)  # by halt_max_steps every row has finished once


def test_halted_rows_reset_and_take_new_data_others_keep_theirs() -> None:
    model, first = tiny_model().train(), make_batch(seed=1)
    carry = model.initial_carry(first)
    carry, _ = model(carry, first)
    carry, _ = model(carry, first)
    carry.halted = torch.tensor([True, False, False])
    second = make_batch(seed=2)
    new_carry, out = model(carry, second)
    assert torch.equal(new_carry.steps, torch.tensor([1, 3, 3], dtype=torch.int32))
    assert torch.equal(new_carry.batch["inputs"][0], second["inputs"][0])
    assert torch.equal(new_carry.batch["inputs"][1:], first["inputs"][1:])
    # Row 0 started over from H_init/L_init: same logits as a fresh carry on the new data.
    _, fresh = model(model.initial_carry(second), second)
    torch.testing.assert_close(out.logits[0], fresh.logits[0])
    assert not torch.allclose(out.logits[1], fresh.logits[1])


# ----------------------------------------------------------------------------- training


def test_puzzle_table_is_a_buffer_not_a_parameter() -> None:
    model = tiny_model()
    table = model.puzzle_emb.weights
    assert all(p is not table for p in model.parameters())
    assert "puzzle_emb.weights" in model.state_dict()
    assert torch.all(table == 0)  # zero-initialised


def test_a_few_steps_lower_the_loss_on_a_fixed_batch() -> None:
    model, batch = tiny_model(H_cycles=1, L_cycles=2).train(), make_batch(size=4)
    dense = AdamATan2(model.parameters(), lr=3e-3, weight_decay=0.0)
    sparse = SignSGD(model.puzzle_emb, lr=1e-2)
    losses = []
    for _ in range(15):
        carry, out = model(model.initial_carry(batch), batch)
        loss, metrics = act_loss(out, carry.batch["labels"], "stablemax")
        loss.backward()
        dense.step()
        sparse.step()
        dense.zero_grad()
        sparse.zero_grad()
        # The token loss is what must fall; the bootstrapped Q terms wander early on.
        losses.append(metrics["lm_loss"].item())
    assert losses[-1] < 0.7 * losses[0]


def test_save_and_load_state_dict_gives_identical_outputs() -> None:
    model, batch = tiny_model(seed=0).eval(), make_batch()
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()  # non-trivial table must round-trip too
    other = tiny_model(seed=123).eval()
    other.load_state_dict(model.state_dict())
    _, a = model(model.initial_carry(batch), batch)
    _, b = other(other.initial_carry(batch), batch)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.q_halt_logits, b.q_halt_logits)


def test_reset_puzzle_embeddings_resizes_table_and_config() -> None:
    model = tiny_model()
    init = torch.randn(9, 64)
    model.reset_puzzle_embeddings(9, init)
    assert model.config.num_puzzle_ids == 9
    assert torch.equal(model.puzzle_emb.weights, init)
    with pytest.raises(ValueError, match="shape"):
        model.reset_puzzle_embeddings(3, init)


def test_a_compiled_model_serves_every_table_size_without_recompiling() -> None:
    # Test-time adaptation gives each group of tasks a fresh table of its own size.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model = tiny_model(halt_max_steps=1).eval()
    compiled = torch.compile(model)
    outputs = []
    for rows in (6, 11):
        model.reset_puzzle_embeddings(rows, torch.randn(rows, 64))
        batch = make_batch(ids=[rows - 1, 1, 2])
        with torch.no_grad():
            _, output = compiled(model.initial_carry(batch), batch)
            _, expected = model(model.initial_carry(batch), batch)
        torch.testing.assert_close(output.logits, expected.logits, rtol=1e-4, atol=1e-4)
        outputs.append(counters["stats"]["unique_graphs"])
    assert outputs[0] > 0 and outputs[1] == outputs[0]


def layer_output_dtype(model: HRM, device: str) -> tuple[torch.dtype, HRMOutput, Carry]:
    """The dtype a transformer projection computes in during one training segment."""
    seen = []
    hook = model.L_level.layers[0].mlp.down_proj.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype)
    )
    batch = {k: v.to(device) for k, v in make_batch().items()}
    carry, out = model(model.initial_carry(batch), batch)
    hook.remove()
    return seen[-1], out, carry


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_autocast_keeps_float32_masters_and_outputs(device: str) -> None:
    model = tiny_model(forward_dtype="bfloat16").to(device).train()
    computed, out, carry = layer_output_dtype(model, device)
    loss, _ = act_loss(out, carry.batch["labels"], "stablemax")
    loss.backward()
    assert computed == torch.bfloat16
    assert out.logits.dtype == torch.float32 and carry.z_H.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("device", DEVICES)
def test_auto_dtype_is_bfloat16_on_cuda_and_float32_on_cpu(device: str) -> None:
    computed, _, _ = layer_output_dtype(tiny_model(forward_dtype="auto").to(device), device)
    assert computed == (torch.bfloat16 if device == "cuda" else torch.float32)


# ----------------------------------------------------------------------------- config


def test_paper_preset_has_about_27m_dense_parameters() -> None:
    with torch.device("meta"):
        model = HRM(PRESETS["paper"].model)
    count = sum(p.numel() for p in model.parameters())
    assert 26_000_000 <= count <= 28_000_000


@pytest.mark.parametrize("preset, puzzle_tokens", [("paper", 1), ("trm", 16)])
def test_full_size_presets_run_one_forward_on_meta_device(preset, puzzle_tokens) -> None:
    config = make_config(preset, seq_len=8)
    with torch.device("meta"):
        model = HRM(config).train()
        batch = {
            "inputs": torch.zeros(2, 8, dtype=torch.long),
            "labels": torch.zeros(2, 8, dtype=torch.long),
            "puzzle_ids": torch.zeros(2, dtype=torch.long),
        }
        carry, out = model(model.initial_carry(batch), batch)
    assert out.logits.shape == (2, 8, 12)
    assert carry.z_H.shape == (2, puzzle_tokens + 8, 512)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_cpu_presets_run_one_forward(preset: str) -> None:
    torch.manual_seed(0)
    model = HRM(make_config(preset, seq_len=SEQ, num_puzzle_ids=6)).train()
    batch = make_batch()
    carry, out = model(model.initial_carry(batch), batch)
    loss, _ = act_loss(out, carry.batch["labels"], "stablemax")
    assert out.logits.shape == (3, SEQ, VOCAB) and torch.isfinite(loss)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_size", 0),
        ("hidden_size", "64"),
        ("num_heads", 3),  # 64 not divisible by 3
        ("num_heads", True),
        ("puzzle_emb_ndim", -1),
        ("pos_encodings", "alibi"),
        ("q_learning", "none"),
        ("forward_dtype", "float64"),
        ("halt_exploration_prob", 1.5),
        ("expansion", 0.0),
        ("rope_theta", float("nan")),  # NaN passes a "<= 0" check
        ("rms_norm_eps", float("inf")),
        ("halt_max_steps", 0),
        ("H_layers", 0),  # an HRM needs its H module
        ("puzzle_emb_len", -1),
        ("mlp_t", "yes"),
    ],
)
def test_config_validation_names_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        make_config("tiny", **{field: value})


def test_config_validation_on_direct_construction() -> None:
    with pytest.raises(ValueError, match="H_cycles"):
        HRMConfig(H_cycles=0)




# ----------------------------------------------------------------------------- TRM


def tiny_trm(seed: int = 0, **overrides: object) -> HRM:
    fields = {"arch": "trm", "H_layers": 0, "L_layers": 2, "H_cycles": 3, "L_cycles": 2,
              "puzzle_emb_len": 3, "q_learning": "halt_only"}  # fmt: skip
    return tiny_model(seed, **{**fields, **overrides})


def test_trm_builds_one_network_under_the_official_names() -> None:
    model = tiny_trm()
    assert not hasattr(model, "H_level")
    layer = [f"L_level.layers.{i}.{name}.weight" for i in range(2) for name in (
        "self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")]
    # The official TRM's state-dict keys under `_orig_mod.model.inner.`, except its
    # `embed_tokens.embedding_weight`.
    assert set(model.state_dict()) == {"H_init", "L_init", "embed_tokens.weight",
                                       "puzzle_emb.weights", "lm_head.weight", "q_head.weight",
                                       "q_head.bias", *layer}  # fmt: skip


def test_trm_pads_the_puzzle_embedding_to_puzzle_emb_len_tokens() -> None:
    model, batch = tiny_trm().train(), make_batch()
    assert model.puzzle_len == 3
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
        x = model._input_embeddings(batch["inputs"], batch["puzzle_ids"], None) / model.embed_scale
    assert torch.equal(x[:, 0], model.puzzle_emb.weights[batch["puzzle_ids"]])  # 64 = 1 token
    assert torch.all(x[:, 1:3] == 0)  # zero padding up to 3 tokens
    carry, out = model(model.initial_carry(batch), batch)
    assert carry.z_H.shape == (3, 3 + SEQ, 64) and out.logits.shape == (3, SEQ, VOCAB)


def test_trm_runs_forward_and_backward() -> None:
    model, batch = tiny_trm().train(), make_batch()
    carry, out = model(model.initial_carry(batch), batch)
    loss, _ = act_loss(out, carry.batch["labels"], "stablemax")
    loss.backward()
    assert torch.isfinite(loss) and out.target_q_continue is None
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.L_level.layers[0].self_attn.qkv_proj.weight.grad.abs().sum() > 0
    assert model.puzzle_emb.local_weights.grad.abs().sum() > 0


def test_trm_runs_the_first_rounds_without_a_graph_and_the_whole_last_round_with_one() -> None:
    model, batch = tiny_trm().train(), make_batch()  # H_cycles 3, L_cycles 2
    calls = []
    model.L_level.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    _, out = model(model.initial_carry(batch), batch)
    assert calls == [False] * 6 + [True] * 3  # 2 rounds of 2 L + 1 H, then 1 round with grad
    out.logits.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    def last_round_grads(whole: bool) -> dict:
        """The gradient from the TRM recursion spelled out; `whole=False` keeps only the last
        L and H update in the graph, as HRM does."""
        model.zero_grad()
        x = model._input_embeddings(batch["inputs"], batch["puzzle_ids"], None)
        z_H = model.H_init.expand_as(x)
        z_L = model.L_init.expand_as(x)
        cos_sin = model.rotary()
        with torch.no_grad():
            for _ in range(2):
                for _ in range(2):
                    z_L = model.L_level(z_L, z_H + x, cos_sin)
                z_H = model.L_level(z_H, z_L, cos_sin)
            if not whole:
                z_L = model.L_level(z_L, z_H + x, cos_sin)
        for _ in range(2 if whole else 1):
            z_L = model.L_level(z_L, z_H + x, cos_sin)
        z_H = model.L_level(z_H, z_L, cos_sin)
        model.lm_head(z_H[:, 3:]).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    name = "L_level.layers.0.mlp.down_proj.weight"
    expected = last_round_grads(whole=True)
    assert set(grads) == set(expected) and name in grads
    for key, grad in expected.items():
        torch.testing.assert_close(grads[key], grad, msg=key)
    assert not torch.allclose(grads[name], last_round_grads(whole=False)[name])


@pytest.mark.parametrize(("halt", "cont", "expect"), [(0.5, 9.0, True), (-0.5, -9.0, False)])
def test_trm_halts_in_training_when_q_halt_is_positive(halt: float, cont: float, expect: bool):
    model, batch = tiny_trm().train(), make_batch()
    set_q_bias(model, halt=halt, cont=cont)
    carry, out = model(model.initial_carry(batch), batch)
    assert torch.all(carry.halted == expect) and out.target_q_continue is None
    model.eval()  # evaluation runs every segment
    carry, _ = model(model.initial_carry(batch), batch)
    assert not torch.any(carry.halted)


def test_trm_mlp_t_mixes_positions_with_an_mlp_over_the_transposed_activations() -> None:
    model, batch = tiny_trm(mlp_t=True).train(), make_batch()
    block = model.L_level.layers[0]
    assert block.self_attn is None and block.mlp_t.gate_up_proj.weight.shape[1] == 3 + SEQ
    x = torch.randn(2, 3 + SEQ, 64)
    h = x.transpose(1, 2)  # (B, hidden, T): the norm runs over the sequence axis
    h = F.rms_norm(h + block.mlp_t(h), (3 + SEQ,), eps=1e-5).transpose(1, 2)
    expected = F.rms_norm(h + block.mlp(h), (64,), eps=1e-5)
    torch.testing.assert_close(block(x, None), expected)
    carry, out = model(model.initial_carry(batch), batch)
    act_loss(out, carry.batch["labels"], "stablemax")[0].backward()
    assert block.mlp_t.down_proj.weight.grad.abs().sum() > 0


def test_unknown_arch_names_the_field_and_the_value() -> None:
    with pytest.raises(ValueError, match=r"HRMConfig\.arch .*'transformer'"):
        HRMConfig(arch="transformer")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"H_layers": 2}, r"H_layers must be 0 for arch='trm'"),
        ({"q_learning": "full"}, r"q_learning must be 'halt_only' for arch='trm'"),
        ({"puzzle_emb_ndim": 0}, r"puzzle_emb_len must be 0 without puzzle embeddings"),
        ({"puzzle_emb_ndim": 600, "puzzle_emb_len": 1}, r"puzzle_emb_len=1 tokens .* cannot"),
    ],
)
def test_trm_config_validation(fields: dict, message: str) -> None:
    trm = {"arch": "trm", "H_layers": 0, "q_learning": "halt_only", "puzzle_emb_len": 16}
    with pytest.raises(ValueError, match=message):
        HRMConfig(**{**trm, **fields})


def test_trm_preset_has_about_7m_dense_parameters() -> None:
    with torch.device("meta"):
        count = sum(p.numel() for p in HRM(PRESETS["trm"].model).parameters())
    assert 6_500_000 <= count <= 7_500_000


# ----------------------------------------------------------------------------- cropped canvas


@pytest.mark.parametrize("pos_encodings", ["rope", "learned"])
def test_a_cropped_canvas_runs_each_cell_at_its_full_canvas_position(pos_encodings) -> None:
    """A 3x3 corner of a 6x6 canvas equals a 3x3-canvas model whose position tables are the
    6x6 tables' rows of those cells (row * 6 + column, after the puzzle token)."""
    big = tiny_model(seq_len=36, pos_encodings=pos_encodings).eval()
    small = tiny_model(seq_len=9, pos_encodings=pos_encodings).eval()
    cells = [1 + row * 6 + col for row in range(3) for col in range(3)]  # 1: the puzzle token
    rows = torch.tensor([0, *cells])
    state = big.state_dict()
    if pos_encodings == "learned":
        state["embed_pos.weight"] = state["embed_pos.weight"][rows]
    small.load_state_dict(state)
    if pos_encodings == "rope":
        small.rotary.cos, small.rotary.sin = big.rotary.cos[rows], big.rotary.sin[rows]
    batch = make_batch()
    batch = {k: v[:, :9] if v.dim() == 2 else v for k, v in batch.items()}
    with torch.no_grad():
        carry, out = big(big.initial_carry(batch), batch)
        _, expected = small(small.initial_carry(batch), batch)
    assert carry.z_H.shape == (3, 1 + 9, 64) and out.logits.shape == (3, 9, VOCAB)
    assert torch.equal(out.logits, expected.logits)
    assert torch.equal(out.q_halt_logits, expected.q_halt_logits)


@pytest.mark.parametrize("length, overrides, why", [
    (20, {}, "must be a square of at most 36 tokens"),
    (49, {}, "must be a square of at most 36 tokens"),
    (16, {"mlp_t": True, "arch": "trm", "H_layers": 0, "q_learning": "halt_only"},
     "mlp_t mixes a fixed number of positions"),
])  # fmt: skip
def test_a_canvas_the_model_cannot_run_is_refused(length, overrides, why) -> None:
    model = tiny_model(seq_len=36, **overrides)
    batch = {"inputs": torch.full((2, length), 2), "labels": torch.full((2, length), 2),
             "puzzle_ids": torch.tensor([1, 2])}  # fmt: skip
    with pytest.raises(ValueError, match=f"inputs have {length} tokens.*{why}"):
        model(model.initial_carry(batch), batch)
