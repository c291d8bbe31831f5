"""Plain nn.Modules. They know nothing of Lightning or compression; every one takes
(in_channels, num_classes, image_size) so it works on every dataset."""
