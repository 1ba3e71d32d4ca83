import protocol

def test_x():
    assert protocol.__file__
