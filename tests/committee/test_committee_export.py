import torch

from committee_toys import make_batch
from recsys_committee.committee import Committee, CommitteeConfig, GateConfig, export_student


def test_export_is_the_bare_student_bit_for_bit(student, teachers, batch):
    committee = Committee.build(student, teachers, batch, CommitteeConfig(answer_head="separate", gate_config=GateConfig(warmup_steps=1)))
    opt = torch.optim.Adam(committee.trainable_parameters(), lr=1e-2)
    committee.train()
    for step in range(3):
        out = committee(batch, step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    exported = export_student(committee)
    assert exported is not committee.student and not exported.training
    keys = set(exported.state_dict())
    assert keys == set(committee.student.state_dict())
    assert keys == {k[len("student."):] for k in committee.state_dict() if k.startswith("student.")}
    assert not any(k.split(".")[0] in {"qa", "gate", "losses", "teachers", "separate_head"} for k in keys)
    assert sum(p.numel() for p in exported.parameters()) < sum(p.numel() for p in committee.trainable_parameters())

    committee.eval()
    test = make_batch(n=50, d_in=6, seed=9)
    with torch.no_grad():
        a, b = committee.student(test), exported(test)
    for field in ("logits", "hidden", "h0"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field

    committee.train()  # training on does not touch the export
    snapshot = {k: v.clone() for k, v in exported.state_dict().items()}
    out = committee(batch, 10)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    assert all(torch.equal(snapshot[k], v) for k, v in exported.state_dict().items())


def test_distill_state_dict_excludes_teachers_and_round_trips(student, teachers, batch):
    committee = Committee.build(student, teachers, batch)
    state = committee.distill_state_dict()
    assert state and not any(k.startswith("teachers.") for k in state)
    assert all(not n.startswith("teachers.") for n, _ in committee.named_trainable_parameters())
    committee.load_distill_state_dict(state)
